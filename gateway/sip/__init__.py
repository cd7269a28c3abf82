"""The only package that imports pjsua2. What leaves it is plain frozen data."""
