# Writes a value as YAML flow (JSON-like) text: hashes, arrays, strings
# (double-quoted, escaped), numbers and booleans. Puppet 7 without
# stdlib has no to_yaml.
function certnode::flow(Any $value) >> String {
  case $value {
    Hash: {
      $pairs = $value.map |$k, $v| { "${certnode::flow(String($k))}: ${certnode::flow($v)}" }
      "{${pairs.join(', ')}}"
    }
    Array: {
      $items = $value.map |$v| { certnode::flow($v) }
      "[${items.join(', ')}]"
    }
    Integer, Float, Boolean: { String($value) }
    default: {
      $escaped = String($value).regsubst('\\\\', '\\\\\\\\', 'G').regsubst('"', '\\"', 'G')
      "\"${escaped}\""
    }
  }
}
