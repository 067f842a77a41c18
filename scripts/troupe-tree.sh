# Sourced by scripts/typecheck and scripts/layers: links the repository folders into a
# temporary `troupe` package at "$tree" (removed on exit), the import names users see.
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/troupe"
for f in "$root"/runtime/*; do ln -s "$f" "$tree/troupe/$(basename "$f")"; done
for pkg in actors brokers supervisors examples; do ln -s "$root/$pkg" "$tree/troupe/$pkg"; done
