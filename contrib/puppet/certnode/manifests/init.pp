# @summary A certpush node, set up as SECURITY.md recommends.
#
# The certnode binary (package or binary), the push account with the
# forced command as its login shell and a root-owned home, its key in a
# root-owned authorized_keys file with the forced command, the sudo rule
# (install now), certnode.yaml with trusted_keys, the incoming directory,
# sshd's Match block, the install timer for the chosen mode and an
# optional nginx snippet. See README.md for every parameter.
class certnode (
  Array[String[1], 1]             $trusted_keys,
  Hash[String[1], Hash, 1]        $certs,
  Array[String[1], 1]             $push_keys,
  Enum['package', 'binary']       $install_method   = 'package',
  String[1]                       $package          = 'certnode',
  Optional[String[1]]             $deb              = undef,
  Optional[String[1]]             $binary_src       = undef,
  Optional[String[1]]             $bin              = undef,
  Optional[String[1]]             $forced_command   = undef,
  Enum['now', 'cron']             $mode             = 'now',
  String[1]                       $user             = 'certsync',
  String[1]                       $home             = '/certsync',
  Optional[String[1]]             $incoming         = undef,
  String[1]                       $authorized_keys_dir = '/etc/ssh/authorized_keys',
  String[1]                       $config_file      = '/etc/certnode/certnode.yaml',
  String[1]                       $root             = '/etc/certnode',
  Optional[String[1]]             $roots            = undef,
  Integer[1]                      $keep             = 3,
  Hash                            $defaults         = {
    'test'   => ['/usr/sbin/nginx', '-t', '-q'],
    'reload' => ['/usr/bin/systemctl', 'reload', 'nginx'],
    'verify' => ['127.0.0.1:443'],
  },
  String[1]                       $sudoers_file     = '/etc/sudoers.d/certnode',
  String[1]                       $sshd_config      = '/etc/ssh/sshd_config',
  String[1]                       $sshd_binary      = '/usr/sbin/sshd',
  Array[String[1], 1]             $sshd_reload      = ['/usr/bin/systemctl', 'reload', 'ssh'],
  Optional[Boolean]               $timer            = undef,
  Enum['systemd', 'cron']         $scheduler        = 'systemd',
  String[1]                       $unit_dir         = '/etc/systemd/system',
  Boolean                         $systemd_enable   = true,
  Boolean                         $systemd_start    = true,
  String[1]                       $cron_file        = 'certnode',
  String[1]                       $cron_minute      = '*/5',
  Optional[String[1]]             $nginx_snippet    = undef,
  Optional[String[1]]             $nginx_cert       = undef,
  Optional[String[1]]             $sshd_block_file  = undef,
) {
  $_package = $install_method == 'package'
  $_bin = $bin ? {
    undef   => $_package ? { true => '/usr/bin/certnode', default => '/usr/local/bin/certnode' },
    default => $bin,
  }
  $_forced = $forced_command ? {
    undef   => $_package ? {
      true    => '/usr/share/certnode/certnode-forced-command',
      default => '/usr/local/lib/certpush/certnode-forced-command',
    },
    default => $forced_command,
  }
  $_incoming = $incoming ? { undef => "${home}/live", default => $incoming }
  $_timer = $timer ? { undef => $mode == 'cron', default => $timer }
  if $_incoming[0, length("${home}/")] != "${home}/" {
    fail("certnode: incoming ${_incoming} must be inside home ${home}")
  }

  if $_package {
    package { $package:
      ensure   => installed,
      source   => $deb,
      provider => $deb ? { undef => undef, default => 'dpkg' },
      before   => User[$user],
    }
  } else {
    if $binary_src == undef { fail('certnode: binary_src is required for the binary method') }
    $dirs = unique([certnode::dirname($_bin), certnode::dirname($_forced)])
    file { $dirs:
      ensure => directory, owner => 'root', group => 'root', mode => '0755',
    }
    file { $_bin:
      ensure => file, source => $binary_src, owner => 'root', group => 'root', mode => '0755',
    }
    file { $_forced:
      ensure  => file,
      content => file('certnode/certnode-forced-command'),
      owner   => 'root', group => 'root', mode => '0755',
      before  => User[$user],
    }
  }

  # No password, a home it cannot write, and no shell: the login shell is
  # the forced command (sshd runs every command through the login shell).
  group { $user:
    ensure => present, system => true,
  }
  user { $user:
    ensure     => present,
    system     => true,
    gid        => $user,
    home       => $home,
    managehome => false,
    shell      => $_forced,
    comment    => 'certpush push account',
    require    => Group[$user],
  }
  file { $home:
    ensure => directory, owner => 'root', group => 'root', mode => '0755',
  }
  file { $_incoming:
    ensure  => directory, owner => $user, group => $user, mode => '0755',
    require => User[$user],
  }
  file { $authorized_keys_dir:
    ensure => directory, owner => 'root', group => 'root', mode => '0755',
  }
  file { "${authorized_keys_dir}/${user}":
    ensure  => file, owner => 'root', group => 'root', mode => '0644',
    content => epp('certnode/authorized_keys.epp', {
      'keys' => $push_keys, 'mode' => $mode, 'forced' => $_forced, 'bin' => $_bin, 'config' => $config_file,
    }),
  }

  $config_dirs = unique([certnode::dirname($config_file), $root])
  file { $config_dirs:
    ensure => directory, owner => 'root', group => 'root', mode => '0755',
  }
  $config = {
    'root'         => $root,
    'incoming'     => $_incoming,
    'trusted_keys' => $trusted_keys,
    'keep'         => $keep,
    'defaults'     => $defaults,
    'certs'        => $certs,
  } + ($roots ? { undef => {}, default => { 'roots' => $roots } })
  file { $config_file:
    ensure  => file, owner => 'root', group => 'root', mode => '0644',
    content => "# Managed by Puppet (certnode)\n${config.keys.sort.map |$k| { "${k}: ${certnode::flow($config[$k])}" }.join("\n")}\n",
  }

  if $mode == 'now' {
    file { $sudoers_file:
      ensure       => file, owner => 'root', group => 'root', mode => '0440',
      content      => epp('certnode/sudoers.epp', { 'user' => $user, 'bin' => $_bin, 'config' => $config_file }),
      validate_cmd => '/usr/sbin/visudo -cf %',
    }
  } else {
    file { $sudoers_file: ensure => absent }
  }

  # The Match block, last in sshd_config between markers, replaced only
  # when it differs from the block kept in $sshd_block_file, and only once
  # sshd -t accepts the result.
  $begin = "# BEGIN certnode ${user}"
  $end = "# END certnode ${user}"
  $_block_file = $sshd_block_file ? { undef => "${sshd_config}.certnode-${user}", default => $sshd_block_file }
  file { $_block_file:
    ensure  => file, owner => 'root', group => 'root', mode => '0644',
    content => epp('certnode/sshd_match.epp', {
      'user' => $user, 'keys_dir' => $authorized_keys_dir, 'mode' => $mode, 'home' => $home,
    }),
  }
  exec { "certnode sshd Match block for ${user}":
    provider => shell,
    command  => @("SH"/$),
      set -eu
      f='${sshd_config}'; new="\$f.certnode-new"
      awk -v b='${begin}' -v e='${end}' '\$0==b{s=1} !s{print} \$0==e{s=0}' "\$f" >"\$new"
      { echo '${begin}'; cat '${_block_file}'; echo '${end}'; } >>"\$new"
      '${sshd_binary}' -t -f "\$new" || { rm -f "\$new"; exit 1; }
      cat "\$new" >"\$f"; rm -f "\$new"
      | SH
    unless   => "awk -v b='${begin}' -v e='${end}' '\$0==b{p=1;next} \$0==e{p=0} p' '${sshd_config}' | cmp -s - '${_block_file}'",
    require  => File[$_block_file],
    notify   => Exec["certnode reload sshd for ${user}"],
  }
  exec { "certnode reload sshd for ${user}":
    command     => $sshd_reload.join(' '),
    path        => ['/usr/sbin', '/usr/bin', '/sbin', '/bin'],
    refreshonly => true,
  }

  if $_timer and $scheduler == 'systemd' {
    if !$_package {
      file { "${unit_dir}/certnode-install.service":
        ensure  => file, owner => 'root', group => 'root', mode => '0644',
        content => "# Managed by Puppet (certnode)\n[Unit]\nDescription=certnode: install the certificates certpush uploaded\nConditionPathExists=${config_file}\n\n[Service]\nType=oneshot\nExecStart=${_bin} --config ${config_file} install\n",
      }
      file { "${unit_dir}/certnode-install.timer":
        ensure  => file, owner => 'root', group => 'root', mode => '0644',
        content => "# Managed by Puppet (certnode)\n[Unit]\nDescription=certnode: install uploaded certificates every five minutes\n\n[Timer]\nOnCalendar=*:0/5\nRandomizedDelaySec=60\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n",
      }
    }
    if $systemd_enable and $systemd_start {
      service { 'certnode-install.timer':
        ensure => running, enable => true,
      }
    } elsif $systemd_enable {
      # Enabled only: the link `systemctl enable` makes for
      # WantedBy=timers.target, which needs no running systemd (image
      # builds, containers).
      $timer_unit = $_package ? {
        true    => '/usr/lib/systemd/system/certnode-install.timer',
        default => "${unit_dir}/certnode-install.timer",
      }
      file { '/etc/systemd/system/timers.target.wants':
        ensure => directory,
      }
      file { '/etc/systemd/system/timers.target.wants/certnode-install.timer':
        ensure  => link,
        target  => $timer_unit,
        require => $_package ? {
          true    => Package[$package],
          default => File["${unit_dir}/certnode-install.timer"],
        },
      }
    }
  }
  if $scheduler == 'cron' {
    file { "/etc/cron.d/${cron_file}":
      ensure  => $_timer ? { true => file, default => absent },
      owner   => 'root', group => 'root', mode => '0644',
      content => "# Managed by Puppet (certnode)\n${cron_minute} * * * * root ${_bin} --config ${config_file} install\n",
    }
  }

  if $nginx_snippet {
    $cert = $nginx_cert ? { undef => $certs.keys[0], default => $nginx_cert }
    file { $nginx_snippet:
      ensure  => file, owner => 'root', group => 'root', mode => '0644',
      content => "# Managed by Puppet (certnode)\n# include this in the server block that serves ${cert}\nssl_certificate ${root}/live/${cert}/fullchain.pem;\nssl_certificate_key ${root}/live/${cert}/privkey.pem;\n",
    }
  }
}
