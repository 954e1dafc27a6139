# Sourced by the agent's scripts and benchmarks: a publish-settings file for a staging job that never talks to
# a service (offline start only checks that the file parses and holds the subscription).
#
#   offline_publish_settings FILE SUBSCRIPTION
offline_publish_settings() {
  cat > "$1" <<XML
<?xml version="1.0" encoding="utf-8"?>
<PublishData><PublishProfile SchemaVersion="2.0" PublishMethod="AzureServiceManagementAPI">
<Subscription ServiceManagementUrl="https://127.0.0.1:8443/" Id="$2" Name="$2" ManagementCertificate="AQID" />
</PublishProfile></PublishData>
XML
}
