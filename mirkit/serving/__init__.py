"""Serving a trained run: reading it without the trainer (`runs`), the catalogue index
and its search (`index`), recommendations and their JSON answers (`recommend`), and
`mirkit serve`'s HTTP API and page (`app`, `batching`, `media`, `static/`)."""
