#!/usr/bin/env bash
# Fetches Apache Kafka's jars from Maven Central into .cache/kafka/<version>/libs, once.
# The version and the artifacts are in deployflow/local/kafka-pom.xml. Idempotent: a stamp file written after a
# complete copy makes later runs a no-op; a half-finished copy is discarded and fetched again.
# Maven's local repository is the default (~/.m2) unless MAVEN_REPO_LOCAL is set.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
pom="$root/deployflow/local/kafka-pom.xml"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom" | head -n1)"
if [ -z "$version" ]; then
  echo "fetch-kafka: no <kafka.version> in $pom" >&2
  exit 1
fi
dest="$root/.cache/kafka/$version"
stamp="$dest/.fetched"

# The stamp records the pom it was fetched with: editing the pom (another artifact, a new version) fetches again.
pom_sum="$(sha256sum "$pom" | cut -d' ' -f1)"
fetched() {
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$pom_sum" ] && compgen -G "$dest/libs/kafka_2.13-$version.jar" >/dev/null
}
fetched && exit 0

# One fetch at a time (make and the pytest fixture may both ask); the second finds the stamp once it has the lock.
mkdir -p "$dest"
exec 9>"$dest/.lock"
flock 9
fetched && exit 0

command -v mvn >/dev/null 2>&1 || { echo "fetch-kafka: mvn not found (scripts/install-system-deps.sh installs it)" >&2; exit 1; }

echo "fetch-kafka: fetching Apache Kafka $version jars into $dest/libs" >&2
tmp="$dest/libs.partial"
rm -rf "$tmp"
mkdir -p "$tmp"
mvn_args=(-q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies -DincludeScope=runtime "-DoutputDirectory=$tmp")
if [ -n "${MAVEN_REPO_LOCAL:-}" ]; then mvn_args+=("-Dmaven.repo.local=$MAVEN_REPO_LOCAL"); fi
start=$(date +%s)
# Maven 3.8 prints stray colour codes even with -q -B: keep its output in a log, shown only when it fails.
log="$dest/mvn.log"
if ! mvn "${mvn_args[@]}" >"$log" 2>&1; then
  rm -rf "$tmp"
  tail -n 40 "$log" >&2
  echo "fetch-kafka: mvn dependency:copy-dependencies failed for Kafka $version (log: $log)" >&2
  exit 1
fi
if ! compgen -G "$tmp/kafka_2.13-$version.jar" >/dev/null; then
  rm -rf "$tmp"
  echo "fetch-kafka: kafka_2.13-$version.jar missing after the copy" >&2
  exit 1
fi
rm -rf "$dest/libs"
mv "$tmp" "$dest/libs"
echo "$pom_sum" >"$stamp"
echo "fetch-kafka: $(ls "$dest/libs" | wc -l) jars in $(( $(date +%s) - start ))s" >&2
