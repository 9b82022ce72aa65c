package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/certpush/certpush/internal/cli"
	"github.com/certpush/certpush/internal/inventory"
	"github.com/certpush/certpush/internal/push"
)

func (e *env) trustCommand() *cli.Command {
	c := &cli.Command{
		Name:  "trust",
		Args:  "HOST[:PORT] --fingerprint SHA256:...",
		Short: "add a host's key to known_hosts after checking its fingerprint",
		Long: `Fetch the SSH host keys HOST presents (a host of the config, or an address)
and, when one has the fingerprint given with --fingerprint, append its line
to ssh.known_hosts. Without --fingerprint, print the keys and the lines
that would be added, and change nothing: check the fingerprint on the host
(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) first. A host is never
trusted blindly.`,
	}
	var lf lockFlags
	lf.register(&c.Flags)
	want := c.Flags.String("fingerprint", "", "the host key's `SHA256:...` fingerprint, checked on the host")
	c.Run = func(ctx context.Context, args []string) error {
		if len(args) != 1 {
			return cli.Usagef("trust takes one HOST[:PORT]")
		}
		cfg, unlock, err := e.lockedConfig(ctx, lf)
		if err != nil {
			return err
		}
		defer unlock()
		addr := trustAddress(cfg, args[0])
		keys, err := push.FetchHostKeys(ctx, addr, cfg.SSH.ConnectTimeout)
		if err != nil {
			return err
		}
		if *want == "" {
			for _, k := range keys {
				e.note("%s  %s\n  %s", addr, ssh.FingerprintSHA256(k), push.KnownHostsLine(addr, k))
			}
			e.note("nothing changed: check the fingerprint on the host, then run 'certpush trust %s --fingerprint SHA256:...'", args[0])
			return nil
		}
		fp := *want
		if !strings.HasPrefix(fp, "SHA256:") {
			fp = "SHA256:" + fp
		}
		var seen []string
		for _, k := range keys {
			seen = append(seen, ssh.FingerprintSHA256(k))
			if ssh.FingerprintSHA256(k) == fp {
				return e.addKnownHost(cfg.SSH.KnownHosts, push.KnownHostsLine(addr, k), addr)
			}
		}
		return fmt.Errorf("%s presents %s, not %s: refusing to trust it. Check the fingerprint on the host; if it is right, someone may be intercepting the connection", addr, strings.Join(seen, ", "), fp)
	}
	return c
}

// trustAddress is the SSH address of a configured host, or arg itself
// with the default port when it has none.
func trustAddress(cfg *inventory.Config, arg string) string {
	if h, ok := cfg.Host(arg); ok {
		return h.SSHAddress()
	}
	if _, _, err := net.SplitHostPort(arg); err == nil {
		return arg
	}
	port := cfg.SSH.Port
	if port == 0 {
		port = inventory.DefaultPort
	}
	return net.JoinHostPort(strings.Trim(arg, "[]"), strconv.Itoa(port))
}

// addKnownHost appends line to the known_hosts file (created 0644),
// unless it is there already.
func (e *env) addKnownHost(path, line, addr string) error {
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(l) == line {
			e.note("%s is already trusted in %s", addr, path)
			return nil
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if len(data) > 0 && !strings.HasSuffix(string(data), "\n") {
		line = "\n" + line
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	e.note("trusted %s: added to %s:\n  %s", addr, path, line)
	return nil
}
