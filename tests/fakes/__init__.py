"""Small on-disk stand-ins for real datasets, built offline in temp dirs."""
