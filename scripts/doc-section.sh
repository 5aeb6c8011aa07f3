# Sourced by the benchmark scripts: `write_doc_section NAME SECTION DOC` puts the file SECTION,
# which starts with `<!-- NAME:start ... -->` and ends with `<!-- NAME:end -->`, into the
# Markdown file DOC: in place of the previous section between the same markers, or else before
# the file's first `## ` heading or other such section (after its introduction).
write_doc_section() {
  local name="$1" section="$2" doc="$3" out
  out="$(mktemp)"
  awk -v section="$section" -v start="<!-- $name:start" -v end="<!-- $name:end" '
    function emit() { while ((getline line < section) > 0) print line; print ""; done = 1 }
    index($0, start) == 1 { skipping = 1; if (!done) emit(); next }
    skipping { if (index($0, end) == 1) { skipping = 0; getline; if ($0 != "") print } ; next }
    (/^## / || /^<!-- [a-z-]+:start/) && !done { emit() }
    { print }
    END { if (!done) { print ""; emit() } }
  ' "$doc" >"$out"
  cp "$out" "$doc"
  rm -f "$out"
  echo "wrote the section into $doc" >&2
}
