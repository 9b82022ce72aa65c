package acme

import (
	"bufio"
	"net"
	"os"
	"strings"
	"time"

	"github.com/go-acme/lego/v5/challenge"
	"github.com/go-acme/lego/v5/challenge/dns01"
)

// withTimeout makes p report timeout as its propagation timeout, keeping
// its polling interval and whether it solves one name at a time.
func withTimeout(p challenge.Provider, timeout time.Duration) challenge.Provider {
	if timeout <= 0 {
		return p
	}
	interval := dns01.DefaultPollingInterval
	if pt, ok := p.(challenge.ProviderTimeout); ok {
		_, interval = pt.Timeout()
	}
	t := timeoutProvider{Provider: p, timeout: timeout, interval: interval}
	if s, ok := p.(interface{ Sequential() time.Duration }); ok {
		return sequentialProvider{timeoutProvider: t, seq: s.Sequential()}
	}
	return t
}

type timeoutProvider struct {
	challenge.Provider
	timeout, interval time.Duration
}

func (p timeoutProvider) Timeout() (time.Duration, time.Duration) { return p.timeout, p.interval }

type sequentialProvider struct {
	timeoutProvider
	seq time.Duration
}

func (p sequentialProvider) Sequential() time.Duration { return p.seq }

// resolvConf is where the system's resolvers are listed.
const resolvConf = "/etc/resolv.conf"

// resolvers returns the resolvers to check propagation with: the given
// ones, or the system's. lego keeps this setting process-wide, so it is set
// on every Obtain.
func resolvers(given []string) []string {
	if len(given) > 0 {
		return given
	}
	return systemResolvers(resolvConf)
}

// systemResolvers reads the nameserver lines of a resolv.conf file as
// host:53.
func systemResolvers(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			out = append(out, net.JoinHostPort(fields[1], "53"))
		}
	}
	return out
}
