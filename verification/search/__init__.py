"""The worst-case search engine: the search-target protocol, constraint projections and gradient ascent."""
