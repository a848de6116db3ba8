"""The gateway's own web view: a status page, its JSON API and `/metrics` (`http.listen`)."""
