"""The framework-free core: argument checks, shared conventions and class weights (NumPy only)."""
