"""Training of generators (the only place optimisers exist). Needs torch and pytorch-msssim."""
