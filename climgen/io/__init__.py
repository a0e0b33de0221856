"""Reading inputs, writing outputs and CF metadata. No model code here."""
