"""The API's description: `openapi.json` is the OpenAPI 3.1 document of the merchant and
customer API and the webhook events (a data file, edited by hand, checked against every
answer the test suite gets: docs/development.md), and `routes.py` serves it at
`/api/openapi.json` for client generators (docs/api.md, "OpenAPI")."""
