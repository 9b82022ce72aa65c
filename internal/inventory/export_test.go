package inventory

import "github.com/certpush/certpush/internal/yamlconf"

// ParseHostList parses a host-list file on its own (see parseHostList),
// for tests: the hosts, or every problem as an *Error, joined.
func ParseHostList(path string, data []byte, defaults SSH) ([]Host, error) {
	var ps yamlconf.Problems
	entries := parseHostList(path, data, defaults, &ps)
	if err := ps.Err(); err != nil {
		return nil, err
	}
	hosts := make([]Host, len(entries))
	for i, e := range entries {
		hosts[i] = e.Host
	}
	return hosts, nil
}
