"""HTTP serving shared by every pyme-desk server: a fast HTTP/1.1 core and a JSON API router."""
