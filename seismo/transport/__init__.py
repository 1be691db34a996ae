"""How events travel: a pooled HTTP/1.1 client (http1) and the event poster the services send with."""
