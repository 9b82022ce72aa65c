# The directory part of an absolute path (Puppet 7 without stdlib).
function certnode::dirname(String[1] $path) >> String {
  $d = $path.regsubst('/+[^/]*/*$', '')
  $d ? { '' => '/', default => $d }
}
