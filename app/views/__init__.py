"""The page's tabs, one module each, drawn by its `render(settings)`."""
