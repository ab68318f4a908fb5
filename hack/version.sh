#!/usr/bin/env bash
# Prints the version every binary, image and build_info of this checkout
# carries: the chart's appVersion (charts/kafkasend/Chart.yaml, the release
# being prepared) when HEAD is its tag v<appVersion> and the tree is clean,
# else <appVersion>-dev.<short revision>[.dirty]. Fails when HEAD carries a
# release tag v* that is not the chart's appVersion, so a release cannot ship
# a chart naming other images.
set -euo pipefail
cd "$(dirname "$0")/.."
app=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' charts/kafkasend/Chart.yaml)
if [[ -z $app ]]; then
  echo "version.sh: no appVersion in charts/kafkasend/Chart.yaml" >&2
  exit 1
fi
if ! rev=$(git rev-parse --short=12 HEAD 2>/dev/null); then
  echo "$app-dev"
  exit 0
fi
dirty=
if [[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
  dirty=.dirty
fi
for tag in $(git tag --points-at HEAD 'v*' 2>/dev/null); do
  if [[ $tag != "v$app" ]]; then
    echo "version.sh: HEAD is tagged $tag but charts/kafkasend/Chart.yaml has appVersion $app" >&2
    exit 1
  fi
  if [[ -z $dirty ]]; then
    echo "$app"
    exit 0
  fi
done
echo "$app-dev.$rev$dirty"
