"""Settings, secrets and file schemas: gateway.yaml read once and frozen, YAML validated with
file:line errors. Pure; imported by every other wing, imports none of them."""
