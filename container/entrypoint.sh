#!/bin/sh
# The container's goinfer: /config/goinfer.yml when the volume holds one, else the GI_*
# variables alone; the arguments given to `podman run IMAGE ...` are passed on.
if [ -f /config/goinfer.yml ]; then
    exec /usr/local/bin/goinfer -config /config/goinfer.yml "$@"
fi
exec /usr/local/bin/goinfer "$@"
