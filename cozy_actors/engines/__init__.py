"""Engines are plugins: typed interfaces, a registry, built-in and entry-point providers."""
