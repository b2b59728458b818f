"""The nginx both Python benchmarks put side by side with Goinfer: one worker (Goinfer is one
thread), no access log, everything in the run's temporary folder."""


def nginx_conf(tmp, servers):
    """nginx.conf text with `servers` (upstream and server blocks) inside http { }."""
    return f"""worker_processes 1;
worker_rlimit_nofile 8192;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.err warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp};
{servers}
}}
"""
