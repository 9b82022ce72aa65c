// Command certnode runs on every host that serves a certificate: it
// verifies the bundles certpush pushed, installs them atomically, tests and
// reloads the service, checks over TLS what is served, and rolls back on
// any failure.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/certpush/certpush/internal/install"
	"github.com/certpush/certpush/internal/metrics"
)

const usage = `certnode installs the certificates certpush pushes to this host.

Usage:
  certnode [--config FILE] [-v] [--log-json] COMMAND [ARGS]

Commands:
  install [NAME...]  verify and install the newest bundle waiting for each
                     certificate (all configured ones by default), then test,
                     reload, verify over TLS; roll back on failure
  status             what is installed, and whether the endpoint serves it
  check              exit 1 if a certificate expires soon (for cron/monitoring)
  version            print the version

The config is FILE, else $CERTNODE_CONFIG, else /etc/certnode/certnode.yaml.
Exit status: 0 done (or nothing to do), 1 some certificates failed,
2 bad usage or configuration. Run 'certnode COMMAND -h' for a command's flags.
`

var version = "dev"

var idRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

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
	stdout, stderr io.Writer
	log            *slog.Logger
	configPath     string
}

// usageError is bad usage or configuration: exit status 2.
type usageError struct {
	err  error
	hint string
}

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{err: fmt.Errorf(format, args...)} }

// errFailed means some certificates failed and were reported: exit
// status 1 without a further message.
var errFailed = errors.New("some certificates failed")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("certnode", flag.ContinueOnError)
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
	// Quiet unless something needs attention, so cron mails only then.
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	var h slog.Handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	if *logJSON {
		h = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
	}
	e := &env{stdout: stdout, stderr: stderr, log: slog.New(h), configPath: *configPath}
	if e.configPath == "" {
		e.configPath = os.Getenv("CERTNODE_CONFIG")
	}
	if e.configPath == "" {
		e.configPath = install.DefaultConfigPath
	}

	cmd, rest := fs.Arg(0), fs.Args()[1:]
	commands := map[string]func(context.Context, *env, []string) error{
		"install": cmdInstall,
		"status":  cmdStatus,
		"check":   cmdCheck,
		"pull": func(context.Context, *env, []string) error {
			return usageError{err: errors.New("pull is not implemented yet"), hint: "use certpush push, or run 'certnode install' from a timer"}
		},
		"version": func(context.Context, *env, []string) error {
			fmt.Fprintln(stdout, "certnode", version)
			return nil
		},
		"help": func(context.Context, *env, []string) error {
			fmt.Fprint(stdout, usage)
			return nil
		},
	}
	f, ok := commands[cmd]
	if !ok {
		fmt.Fprintf(stderr, "certnode: error: unknown command %q\n\n%s", cmd, usage)
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
	fmt.Fprintf(stderr, "certnode: error: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		if ue.hint != "" {
			fmt.Fprintf(stderr, "certnode: hint: %s\n", ue.hint)
		}
		return 2
	}
	return 1
}

// parseInterleaved parses flags that may come before, between or after
// the positional arguments, which it returns.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func newFlagSet(e *env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: certnode %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	// The flag package has printed the problem and the usage.
	return usageError{err: err}
}

// loadConfig reads the config; any problem with it is a usage error.
func (e *env) loadConfig() (*install.Config, error) {
	cfg, err := install.LoadConfig(e.configPath)
	if err == nil {
		return cfg, nil
	}
	ue := usageError{err: err}
	if errors.Is(err, fs.ErrNotExist) {
		ue.hint = "write the config there, or point --config or $CERTNODE_CONFIG at it"
	}
	return nil, ue
}

func (e *env) installer(cfg *install.Config) *install.Installer {
	return &install.Installer{Config: cfg, Logger: e.log}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cmdInstall(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "install", "install [--force] [--id ID] [--json] [NAME...]")
	force := fs.Bool("force", false, "install even if already installed or older than the installed certificate")
	id := fs.String("id", "", "install the bundle with this `id` (needs exactly one NAME)")
	asJSON := fs.Bool("json", false, `print {"results":[...]} on stdout`)
	metricsFile := fs.String("metrics-file", "", "write Prometheus metrics to `file` (node_exporter textfile collector)")
	names, err := parseInterleaved(fs, args)
	if err != nil {
		return flagError(err)
	}
	if *id != "" && len(names) != 1 {
		return usagef("--id needs exactly one certificate NAME")
	}
	if *id != "" && !idRE.MatchString(*id) {
		return usagef("--id %q is not a bundle id (16 lowercase hex digits)", *id)
	}
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	for _, n := range names {
		if _, ok := cfg.Certs[n]; !ok {
			e.log.Warn("certificate not configured", "cert", n, "config", cfg.Path)
		}
	}
	in := e.installer(cfg)
	results, err := in.Install(ctx, names, install.Options{Force: *force, ID: *id})
	if err != nil {
		return err
	}
	if *metricsFile != "" {
		st, err := in.Check(0)
		if err != nil {
			return err
		}
		if err := installMetrics(results, st, time.Now()).WriteFile(*metricsFile); err != nil {
			return err
		}
	}
	if *asJSON {
		if results == nil {
			results = []install.Result{}
		}
		if err := writeJSON(e.stdout, struct {
			Results []install.Result `json:"results"`
		}{results}); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		for _, r := range results {
			detail := ""
			switch {
			case r.Error != "":
				detail = r.Error
			case r.Result == install.Installed && r.Previous != "":
				detail = "was " + r.Previous + ", expires " + day(r.NotAfter)
			case r.Result == install.Installed || r.Result == install.Unchanged:
				detail = "expires " + day(r.NotAfter)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Cert, r.Result, dash(r.ID), detail)
		}
		tw.Flush()
	}
	for _, r := range results {
		if !r.OK() {
			return errFailed
		}
	}
	return nil
}

func cmdStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "status", "status [--json]")
	asJSON := fs.Bool("json", false, `print {"certs":[...]} on stdout`)
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if fs.NArg() > 0 {
		return usagef("status takes no arguments")
	}
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	st, err := e.installer(cfg).Status(ctx)
	if err != nil {
		return err
	}
	bad := false
	for _, s := range st {
		if s.Error != "" || s.Endpoint != "" && !s.Serving {
			bad = true
		}
	}
	if *asJSON {
		if st == nil {
			st = []install.Status{}
		}
		if err := writeJSON(e.stdout, struct {
			Certs []install.Status `json:"certs"`
		}{st}); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CERT\tID\tEXPIRES\tDAYS\tDOMAINS\tLIVE\tSERVED")
		for _, s := range st {
			served := "-"
			switch {
			case s.Endpoint == "":
			case s.Serving:
				served = "yes (" + s.Endpoint + ")"
			case s.Served != "":
				served = "NO: " + s.Endpoint + " serves " + s.Served[:16]
			default:
				served = "NO: " + s.Endpoint + " unreachable"
			}
			days := "-"
			if !s.NotAfter.IsZero() {
				days = fmt.Sprint(s.DaysLeft)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Cert, dash(s.ID), day(s.NotAfter), days,
				dash(strings.Join(s.Domains, ",")), dash(s.Live), served)
		}
		tw.Flush()
		for _, s := range st {
			if s.Error != "" {
				fmt.Fprintf(e.stderr, "certnode: %s: %s\n", s.Cert, s.Error)
			}
		}
	}
	if bad {
		return errFailed
	}
	return nil
}

func cmdCheck(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "check", "check [--days N] [--json]")
	days := fs.Int("days", 14, "fail if a certificate expires within `N` days")
	asJSON := fs.Bool("json", false, `print {"certs":[...]} on stdout`)
	metricsFile := fs.String("metrics-file", "", "write Prometheus metrics to `file` (node_exporter textfile collector)")
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if fs.NArg() > 0 {
		return usagef("check takes no arguments")
	}
	if *days < 0 {
		return usagef("--days must not be negative")
	}
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	st, err := e.installer(cfg).Check(*days)
	if err != nil {
		return err
	}
	if *metricsFile != "" {
		var s metrics.Set
		certMetrics(&s, st)
		if err := s.WriteFile(*metricsFile); err != nil {
			return err
		}
	}
	bad := 0
	for _, s := range st {
		if s.Problem != "" {
			bad++
		}
	}
	if *asJSON {
		if st == nil {
			st = []install.Status{}
		}
		if err := writeJSON(e.stdout, struct {
			Certs []install.Status `json:"certs"`
		}{st}); err != nil {
			return err
		}
	} else {
		for _, s := range st {
			if s.Problem != "" {
				fmt.Fprintf(e.stdout, "%s: %s\n", s.Cert, s.Problem)
			}
		}
		if bad == 0 {
			fmt.Fprintf(e.stdout, "all %d certificates valid for more than %d days\n", len(st), *days)
		}
	}
	if bad > 0 {
		return errFailed
	}
	return nil
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
