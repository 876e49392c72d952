"""Site file: YAML -> frozen, validated model."""

from bootstrapd.config.loader import LoadResult, check_site, load_site
from bootstrapd.config.model import Site

__all__ = ["LoadResult", "Site", "check_site", "load_site"]
