"""Where definitions come from: a file, or Redis. The core never imports from here."""
