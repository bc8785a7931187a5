"""The ops dashboard: static HTML, CSS and ES modules served by the service, no build step."""
