# @summary On the management server: add a node to a certificate's host
# list and its host key to certpush's known_hosts, checking the
# fingerprint (certpush trust refuses any other key; nothing is ever
# trusted blindly).
#
# @param address The node as certpush dials it: host or host:port.
# @param fingerprint The node's host key fingerprint (SHA256:...), read
#   on the node itself.
# @param hosts_file The host-list file the certificate names with hosts_file:.
# @param user The push account, when it is not ssh.user of certpush.yaml.
# @param config certpush.yaml.
# @param known_hosts ssh.known_hosts of certpush.yaml.
# @param certpush The certpush binary.
define certnode::certpush_host (
  Pattern[/\ASHA256:[A-Za-z0-9+\/]{43}\z/] $fingerprint,
  String[1]           $hosts_file,
  String[1]           $address     = $title,
  Optional[String[1]] $user        = undef,
  String[1]           $config      = '/etc/certpush/certpush.yaml',
  String[1]           $known_hosts = '/etc/certpush/known_hosts',
  String[1]           $certpush    = '/usr/bin/certpush',
) {
  # ssh-keygen -F's name for the address: [host]:port unless the port is 22.
  $parts = $address.match(/\A\[?([^\]]+?)\]?:(\d+)\z/)
  $lookup = $parts ? {
    undef   => $address,
    default => $parts[2] ? { '22' => $parts[1], default => "[${parts[1]}]:${parts[2]}" },
  }
  $line = $user ? { undef => $address, default => "${user}@${address}" }

  # certpush reads the host list with its config: it must exist first.
  if !defined(File[$hosts_file]) {
    file { $hosts_file:
      ensure => file, replace => false, owner => 'root', group => 'root', mode => '0644',
    }
  }
  exec { "certpush trust ${address}":
    command => shellquote($certpush, '--config', $config, 'trust', $address, '--fingerprint', $fingerprint),
    unless  => "ssh-keygen -l -F ${shellquote($lookup)} -f ${shellquote($known_hosts)} | grep -qF -- ${shellquote($fingerprint)}",
    path    => ['/usr/bin', '/bin'],
    require => File[$hosts_file],
  }
  exec { "certpush host list ${hosts_file}: ${line}":
    command  => "printf '%s\\n' ${shellquote($line)} >>${shellquote($hosts_file)}",
    unless   => "grep -qxF -- ${shellquote($line)} ${shellquote($hosts_file)}",
    provider => shell,
    require  => Exec["certpush trust ${address}"],
  }
}
