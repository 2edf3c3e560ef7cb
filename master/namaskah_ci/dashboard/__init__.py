"""The dashboards of the web UI's menu (Pipelines, Deploys, Trends, Reports): WSGI apps over the data API,
pure HTML views, SVG charts, and the security headers every one of their answers carries."""
