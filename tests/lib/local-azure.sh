# Sourced by tests/demo and agent/bench/vault.sh: Azure played locally.
#
#   start_local_azure WORK   starts Azurite (the storage account devstoreaccount1) and seedship-emulator (the
#                            classic Import/Export service) under WORK, on free loopback ports; appends their
#                            process ids to the caller's array `pids` (stop them in an EXIT trap); exports
#                            SEEDSHIP_STORAGE_KEY, SEEDSHIP_MANAGEMENT_CA and SEEDSHIP_BLOB_ENDPOINT for the
#                            tools, and sets `azport`, `subscription` and `publish_settings`.
#
# Needs `root` (the checkout) and seedship-emulator on PATH.

start_local_azure() {
  local work=$1
  local azurite="$root/tests/node_modules/.bin/azurite-blob"
  [ -x "$azurite" ] || (cd "$root/tests" && npm ci --no-audit --no-fund --loglevel=error)
  azport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$azurite" --blobHost 127.0.0.1 --blobPort "$azport" --silent --disableTelemetry --location "$work/azurite" \
      > "$work/azurite.log" 2>&1 &
  pids+=($!)
  local up=
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$azport") 2>/dev/null && { up=1; break; }; sleep 0.1; done
  [ -n "$up" ] || { echo "Azurite did not start; see $work/azurite.log" >&2; return 1; }
  echo "Azurite (the storage account devstoreaccount1) on http://127.0.0.1:$azport"
  # Azurite's well-known development account key.
  export SEEDSHIP_STORAGE_KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
  export SEEDSHIP_BLOB_ENDPOINT="http://127.0.0.1:$azport/devstoreaccount1"   # instead of *.blob.core.windows.net
  SEEDSHIP_EMULATOR_STORAGE_KEY="$SEEDSHIP_STORAGE_KEY" seedship-emulator init --dir "$work/emulator" \
      --storage-account devstoreaccount1 --storage-endpoint "$SEEDSHIP_BLOB_ENDPOINT" > /dev/null
  seedship-emulator serve --dir "$work/emulator" --listen 127.0.0.1:0 > "$work/emulator.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do [ -s "$work/emulator/url" ] && break; sleep 0.1; done
  [ -s "$work/emulator/url" ] || { echo "the emulator did not start; see $work/emulator.log" >&2; return 1; }
  publish_settings="$work/emulator/emulator.publishsettings"
  echo "seedship-emulator listening on $(cat "$work/emulator/url"); publish settings in $publish_settings"
  export SEEDSHIP_MANAGEMENT_CA="$work/emulator/ca.pem"          # trust the emulator's private CA
  subscription=$(sed -n 's/.* Id="\([^"]*\)".*/\1/p' "$publish_settings" | head -1)
}

# arm_start_args: sets the array `arm_args`, the `offline start` options for Resource Manager: the Entra ID
# application `seedship-emulator init` registered (tenant, client id, certificate and key files), the emulator's
# sign-in host and Resource Manager endpoint, and the storage account by resource id. Paths only, no secret.
arm_start_args() {
  local app="$1/emulator/entra-app.json"
  local f
  f() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$app" "$1"; }
  arm_args=(--tenant "$(f tenant)" --client-id "$(f client_id)"
    --client-certificate "$(f certificate)" --client-certificate-key "$(f private_key)"
    --authority "$(f authority)" --management-endpoint "$(f management_endpoint)"
    --management-audience "$(f management_audience)"
    --storage-account-id "/subscriptions/$(f subscription)/resourceGroups/$(f resource_group)/providers/Microsoft.Storage/storageAccounts/devstoreaccount1")
}

# return_args: the return address options (Resource Manager needs them when the job is created, classic at `u:`).
return_args=(--return-name "Backup Admin" --return-address "1 Main St, Springfield, 12345, USA"
  --return-phone "+1 555 0100" --return-email admin@example.com)

# ship_job STAGING: enters the shipping details of the staging location's import job (`u:`), as a customer would.
ship_job() {
  seedship-diskprep u: "s:$1" --carrier FedEx --tracking-number 1Z999AA10123456784 "${return_args[@]}" \
      --return-carrier FedEx --return-carrier-account 123456789 --yes
}
