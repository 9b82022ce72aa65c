// Command certnode runs on every host that serves a certificate: it
// verifies the bundles certpush pushed, installs them atomically, tests and
// reloads the service, checks over TLS what is served, and rolls back on
// any failure.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/certpush/certpush/internal/cli"
	"github.com/certpush/certpush/internal/install"
)

func main() {
	// A dropped SSH session (or a closed terminal) must not cut an install
	// short: it finishes or rolls back under its own timeouts.
	signal.Ignore(syscall.SIGHUP)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// env holds what every command needs.
type env struct {
	stdin          io.Reader // install --stdin reads a bundle stream here
	stdout, stderr io.Writer
	log            *slog.Logger
	configPath     string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdin: os.Stdin, stdout: stdout, stderr: stderr, log: slog.New(slog.DiscardHandler)}
	p := &cli.Program{
		Name:    "certnode",
		Summary: "certnode installs the certificates certpush pushes to this host.",
		Footer: `The config is FILE, else $CERTNODE_CONFIG, else ` + install.DefaultConfigPath + `.
Exit status: 0 done (or nothing to do), 1 some certificates failed,
2 bad usage or configuration.`,
		Commands: []*cli.Command{
			e.installCommand(),
			e.pullCommand(),
			e.bootstrapCommand(),
			e.statusCommand(),
			e.checkCommand(),
			versionCommand(stdout),
		},
		Stdout: stdout,
		Stderr: stderr,
		Start:  e.start,
	}
	return p.Run(ctx, args)
}

// start applies the global flags. certnode is quiet unless something
// needs attention, so cron mails only then.
func (e *env) start(g cli.Globals) {
	e.log = g.Logger(e.stderr, g.Level)
	e.configPath = g.Config
	if e.configPath == "" {
		e.configPath = os.Getenv("CERTNODE_CONFIG")
	}
	if e.configPath == "" {
		e.configPath = install.DefaultConfigPath
	}
}

// version is set at link time: make passes -X main.version=VERSION.
var version string

func versionCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "version",
		Short: "print the version",
		Run: func(context.Context, []string) error {
			fmt.Fprintln(stdout, "certnode", cli.Version(version))
			return nil
		},
	}
}

// loadConfig reads the config; any problem with it is a usage error.
func (e *env) loadConfig() (*install.Config, error) {
	cfg, err := install.LoadConfig(e.configPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, cli.Usage(err, "write the config there, or point --config or $CERTNODE_CONFIG at it")
	}
	if err != nil {
		if strings.Contains(err.Error(), install.NoTrustedKeys) {
			return nil, cli.Usage(err, "signing.pub is in certpush's state directory on the management server (default /var/lib/certpush/signing.pub)")
		}
		return nil, cli.Usage(err)
	}
	if cfg.AllowUnsigned {
		e.log.Warn("allow_unsigned is set: bundles are installed without checking who signed them; set trusted_keys instead", "config", cfg.Path)
	}
	return cfg, nil
}

func (e *env) installer(cfg *install.Config) *install.Installer {
	return &install.Installer{Config: cfg, Logger: e.log}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func day(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
