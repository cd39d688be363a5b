#!/bin/bash
# The image's entrypoint: `podium-entrypoint router` runs `python -m services.router` (likewise
# control_plane, scaler, worker); anything else runs as given. Credentials minted by the init step
# (python -m podium.stack_secrets) are exported from the secrets volume, unless the environment already
# sets them: a variable given to `docker compose` always wins.
set -euo pipefail
tokens="${PODIUM_TOKENS_FILE:-/var/lib/podium/secrets/tokens.env}"
if [ -r "$tokens" ]; then
    while IFS='=' read -r name value; do
        [ -n "$name" ] && [ -z "${!name:-}" ] && export "$name=$value"
    done < "$tokens"
fi
case "${1:-}" in
    control_plane|router|scaler|worker) service="$1"; shift; exec python -m "services.$service" "$@" ;;
    *) exec "$@" ;;
esac
