"""The services: each a package of settings, core and http (seismo.services.base describes the shape)."""
