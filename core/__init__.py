"""The API plumbing every app imports: errors, strict parsers and serializers,
pagination, filters, the OpenAPI schema class, and framework-free text checks."""
