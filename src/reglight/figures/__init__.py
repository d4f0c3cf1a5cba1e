"""The gallery: every picture of the theme, computed by the library on real models and data."""
