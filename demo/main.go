// Command demo runs certpush end to end on a local fleet: three hosts on
// loopback, each a real OpenSSH sshd and a real nginx serving TLS. It
// obtains a wildcard certificate from a local ACME server (pebble) by
// DNS-01, pushes it, shows every host serving it, rotates to a new
// certificate, and stops everything it started. With -issuer devca it
// imports certificates from a local demo CA instead.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/testacme"
	"github.com/certpush/certpush/internal/testfleet"
)

const (
	certName = "example.test"
	sni      = "www.example.test"
)

var domains = []string{"example.test", "*.example.test"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: error: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	binDir := fs.String("bin", "bin", "directory holding the certpush and certnode binaries")
	hosts := fs.Int("hosts", 3, "hosts in the local fleet")
	issuer := fs.String("issuer", "acme", "acme: a local pebble by DNS-01; devca: import from a local demo CA")
	if err := fs.Parse(args); err != nil {
		return err
	}
	certpush, err := filepath.Abs(filepath.Join(*binDir, "certpush"))
	if err != nil {
		return err
	}
	certnode, _ := filepath.Abs(filepath.Join(*binDir, "certnode"))
	for _, b := range []string{certpush, certnode} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("%w (run 'make build' first)", err)
		}
	}
	work, err := os.MkdirTemp("", "certpush-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	stateDir := filepath.Join(work, "state")
	signer, err := bundle.LoadOrCreateSigner(stateDir)
	if err != nil {
		return err
	}

	step(out, "starting a local fleet of %d hosts (sshd + nginx each, on 127.0.0.1)", *hosts)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fleet, err := testfleet.Start(ctx, testfleet.Options{
		Hosts: *hosts, CertName: certName, Domains: domains,
		Certnode: certnode, TrustedKey: signer.PublicKey(), Logger: logger,
	})
	if err != nil {
		return err
	}
	defer func() {
		step(out, "stopping the fleet")
		if err := fleet.Close(); err != nil {
			fmt.Fprintf(out, "demo: stop fleet: %v\n", err)
		}
	}()
	for _, h := range fleet.Hosts {
		fmt.Fprintf(out, "    %s  ssh 127.0.0.1:%d  https 127.0.0.1:%d  serving bootstrap cert %.16s\n", h.Name, h.SSHPort, h.TLSPort, h.BootstrapFingerprint)
	}
	d := &demo{ctx: ctx, out: out, certpush: certpush, fleet: fleet, work: work, stateDir: stateDir,
		config: filepath.Join(work, "certpush.yaml")}
	d.env = append(os.Environ(), "CERTPUSH_CONFIG="+d.config)
	if *issuer == "devca" {
		if err := fleet.WriteInventory(d.config, testfleet.InventoryOptions{StateDir: stateDir}); err != nil {
			return err
		}
		return devcaRounds(ctx, out, fleet, work, d.cp)
	}
	return d.acmeRounds()
}

// demo is a running demo: the fleet, its work directory and certpush's
// config and environment.
type demo struct {
	ctx                    context.Context
	out                    io.Writer
	certpush               string
	fleet                  *testfleet.Fleet
	work, stateDir, config string
	env                    []string
}

// cp runs certpush with args, showing the command line and its output.
func (d *demo) cp(args ...string) error {
	fmt.Fprintf(d.out, "\n$ certpush %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(d.ctx, d.certpush, args...)
	cmd.Env = d.env
	cmd.Stdout, cmd.Stderr = d.out, d.out
	return cmd.Run()
}

// acmeRounds starts pebble, obtains a wildcard certificate by DNS-01 and
// pushes it, renews (nothing is due), then obtains and pushes another.
func (d *demo) acmeRounds() error {
	ctx, out := d.ctx, d.out
	step(out, "starting a local ACME server (pebble) and its DNS server (pebble-challtestsrv)")
	srv, err := testacme.Start(ctx, testacme.Options{Dir: filepath.Join(d.work, "pebble")})
	if err != nil {
		return err
	}
	defer srv.Close()
	// pebble's root is new at every start: certpush and every node are
	// told to trust it, as a private CA's users do with roots:.
	if err := d.fleet.TrustRoot(srv.Root); err != nil {
		return err
	}
	script, err := srv.ExecScript(d.work)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "    ACME directory %s, DNS %s\n", srv.DirectoryURL, srv.DNSAddr)
	// lego's exec DNS provider runs script to publish the TXT records.
	d.env = append(d.env, "EXEC_PATH="+script, "EXEC_SEQUENCE_INTERVAL=0", "EXEC_POLLING_INTERVAL=1", "EXEC_PROPAGATION_TIMEOUT=30")
	extra := fmt.Sprintf("acme:\n  directory: %s\n  email: ops@example.test\n  ca_file: %s\n  dns_resolvers: [%q]\n  disable_propagation_check: true\n",
		srv.DirectoryURL, srv.ListenerCAFile, srv.DNSAddr)
	if err := d.fleet.WriteInventory(d.config, testfleet.InventoryOptions{
		StateDir: d.stateDir,
		Cert:     map[string]any{"challenge": map[string]any{"type": "dns-01", "provider": "exec"}},
		Extra:    extra,
	}); err != nil {
		return err
	}
	var fps []string
	for round := 1; round <= 2; round++ {
		if round == 1 {
			step(out, "obtaining a wildcard certificate for %s by DNS-01, and pushing it", strings.Join(domains, ", "))
		} else {
			step(out, "rotating: obtaining a new certificate and pushing it the same way")
		}
		if err := d.cp("obtain", certName); err != nil {
			return fmt.Errorf("obtain: %w", err)
		}
		if err := d.cp("status"); err != nil {
			return fmt.Errorf("status: %w", err)
		}
		b, err := (&bundle.Store{Dir: filepath.Join(d.stateDir, "bundles")}).Current(certName)
		if err != nil {
			return err
		}
		fps = append(fps, b.Manifest.Fingerprint)
		if err := checkServed(ctx, out, d.fleet, b.Manifest.Fingerprint); err != nil {
			return err
		}
		if round == 1 {
			step(out, "renew from cron: the certificate is fresh, so nothing is issued and every host is unchanged")
			if err := d.cp("renew"); err != nil {
				return err
			}
		}
	}
	step(out, "rollover done: %.16s -> %.16s on all %d hosts", fps[0], fps[1], len(d.fleet.Hosts))
	return nil
}

// devcaRounds imports two certificates from a local demo CA, pushing each.
func devcaRounds(ctx context.Context, out io.Writer, fleet *testfleet.Fleet, work string, cp func(...string) error) error {
	ca := fleet.CA
	var fps []string
	for round := 1; round <= 2; round++ {
		if round == 1 {
			step(out, "issuing a wildcard certificate for %s from a local demo CA", strings.Join(domains, ", "))
		} else {
			step(out, "rotating: a second certificate, pushed the same way")
		}
		files, fp, err := issue(ca, work, round)
		if err != nil {
			return err
		}
		fps = append(fps, fp)
		if err := cp("import", certName, "--cert", files[0], "--chain", files[1], "--key", files[2]); err != nil {
			return err
		}
		if err := cp("push"); err != nil {
			return fmt.Errorf("push: %w", err)
		}
		if err := cp("status"); err != nil {
			return fmt.Errorf("status: %w", err)
		}
		if err := checkServed(ctx, out, fleet, fp); err != nil {
			return err
		}
	}
	step(out, "re-running push: every host already has the bundle")
	if err := cp("push"); err != nil {
		return err
	}
	step(out, "rollover done: %.16s -> %.16s on all %d hosts", fps[0], fps[1], len(fleet.Hosts))
	return nil
}

func step(out io.Writer, format string, args ...any) {
	fmt.Fprintf(out, "\n==> "+format+"\n", args...)
}

func issue(ca *devca.CA, dir string, round int) ([3]string, string, error) {
	var files [3]string
	is, err := ca.Issue(devca.Leaf{Domains: domains, NotBefore: time.Now().Add(time.Duration(round-3) * time.Minute)})
	if err != nil {
		return files, "", err
	}
	for i, f := range []struct {
		name string
		data []byte
	}{{"cert", is.Cert}, {"chain", is.Chain}, {"key", is.Key}} {
		files[i] = filepath.Join(dir, fmt.Sprintf("%s-%d.pem", f.name, round))
		if err := os.WriteFile(files[i], f.data, 0o600); err != nil {
			return files, "", err
		}
	}
	return files, bundle.Fingerprint(is.Leaf), nil
}

// checkServed shows, from outside certpush, what each host serves.
func checkServed(ctx context.Context, out io.Writer, fleet *testfleet.Fleet, want string) error {
	fmt.Fprintf(out, "\n    TLS handshake with each host (SNI %s):\n", sni)
	bad := 0
	for _, h := range fleet.Hosts {
		fp, err := h.ServedFingerprint(ctx, sni)
		mark := "ok"
		if err != nil || fp != want {
			mark, bad = "WRONG", bad+1
		}
		fmt.Fprintf(out, "    %-8s %s  sha256 %.16s…  %s\n", h.Name, h.TLSAddr(), fp, mark)
	}
	if bad > 0 {
		return errors.New("some hosts do not serve the new certificate")
	}
	return nil
}
