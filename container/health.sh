#!/bin/bash
# The image's HEALTHCHECK: GET /health on GI_HEALTH_PORT (default 4444) answers 200. bash's
# /dev/tcp, so the image needs no curl.
exec 3<>"/dev/tcp/127.0.0.1/${GI_HEALTH_PORT:-4444}" || exit 1
printf 'GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
read -r -t 4 status <&3 || exit 1
case "$status" in
"HTTP/1."?" 200 "*) exit 0 ;;
*) exit 1 ;;
esac
