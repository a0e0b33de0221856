"""How deep each tile is refined, and what it costs: the complexity score that explains a
field (:mod:`~climgen.depth.complexity`), each stage's predicted gain and the depth it gives
(:mod:`~climgen.depth.gain`), the self-test of how much learned detail pays
(:mod:`~climgen.depth.skill`), and the multiply-accumulates a depth map spends
(:mod:`~climgen.depth.compute`)."""
