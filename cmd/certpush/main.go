// Command certpush obtains certificates, turns them into signed bundles and
// pushes them to the hosts that serve them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/certpush/certpush/internal/inventory"
)

const usage = `certpush keeps one TLS certificate per domain valid on every host that serves it.

Usage:
  certpush [--config FILE] [-v] [--log-json] COMMAND [ARGS]

Commands:
  push [NAME...]     push the current bundle of each certificate to its hosts
  import NAME        make a bundle from a certificate supplied by hand
  hook               certbot deploy hook: bundle RENEWED_LINEAGE and push it
  obtain NAME        obtain a certificate over ACME, bundle and push it
  renew [NAME...]    renew what is due (threshold or ARI), bundle and push
  status [NAME...]   TLS handshake with every endpoint: is it aligned?
  version            print the version

The config is FILE, else $CERTPUSH_CONFIG, else /etc/certpush/certpush.yaml.
Exit status: 0 done (or nothing to do), 1 some hosts or certificates failed,
2 bad usage or configuration. Run 'certpush COMMAND -h' for a command's flags.
`

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// env holds what every command needs.
type env struct {
	stdout, stderr io.Writer
	log            *slog.Logger
	level          *slog.LevelVar // raised by --quiet
	notes          io.Writer      // progress notes: stdout, stderr with --json, nowhere with --quiet
	configPath     string
	getenv         func(string) string
	progressShown  bool
}

// usageError is bad usage or configuration: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// errFailed means some hosts or certificates failed and were reported:
// exit status 1 without a further message.
var errFailed = errors.New("some hosts or certificates failed")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("certpush", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	configPath := fs.String("config", "", "config `file`")
	verbose := fs.Bool("v", false, "log debug messages")
	logJSON := fs.Bool("log-json", false, "log as JSON lines")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	level := new(slog.LevelVar)
	if *verbose {
		level.Set(slog.LevelDebug)
	}
	var h slog.Handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	if *logJSON {
		h = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
	}
	e := &env{stdout: stdout, stderr: stderr, log: slog.New(h), level: level, notes: stdout, configPath: *configPath, getenv: os.Getenv}
	if e.configPath == "" {
		e.configPath = os.Getenv("CERTPUSH_CONFIG")
	}
	if e.configPath == "" {
		e.configPath = "/etc/certpush/certpush.yaml"
	}

	cmd, rest := fs.Arg(0), fs.Args()[1:]
	commands := map[string]func(context.Context, *env, []string) error{
		"push":   cmdPush,
		"import": cmdImport,
		"hook":   cmdHook,
		"obtain": cmdObtain,
		"renew":  cmdRenew,
		"status": cmdStatus,
		"version": func(context.Context, *env, []string) error {
			fmt.Fprintln(stdout, "certpush", version)
			return nil
		},
	}
	f, ok := commands[cmd]
	if !ok {
		fmt.Fprintf(stderr, "certpush: error: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	err := f(ctx, e, rest)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errFailed):
		return 1
	}
	fmt.Fprintf(stderr, "certpush: error: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// note prints a line about what a command did, e.g. "new bundle".
func (e *env) note(format string, args ...any) {
	fmt.Fprintf(e.notes, format+"\n", args...)
}

// quietly applies --json and --quiet: notes move to stderr (stdout is
// for the JSON) or are dropped, and only warnings and errors are logged.
func (e *env) quietly(pf pushFlags) {
	if pf.json {
		e.notes = e.stderr
	}
	if pf.quiet {
		e.notes = io.Discard
		if e.level.Level() < slog.LevelWarn {
			e.level.Set(slog.LevelWarn)
		}
	}
}

// loadConfig reads the config; any problem with it is a usage error.
func (e *env) loadConfig() (*inventory.Config, error) {
	cfg, err := inventory.Load(e.configPath)
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, usagef("%v\ncertpush: hint: pass --config FILE or set CERTPUSH_CONFIG (an example is inventory/certpush.yaml)", err)
	}
	if err != nil {
		return nil, usageError{err}
	}
	return cfg, nil
}

// flags makes a subcommand's flag set.
func (e *env) flags(name, args, help string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: certpush %s %s\n\n%s\n\nFlags:\n", name, args, help)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses a subcommand's flags; flags may follow positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err}
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
