package inventory

import (
	"errors"
	"fmt"
)

// checkHostName reports whether name can name a host or a group: it is
// used on command lines (--hosts a,b) and in logs, so it must be
// non-empty printable ASCII without spaces, ',', '@' or '#'.
func checkHostName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case len(name) > 255:
		return fmt.Errorf("name is %d bytes, longer than 255", len(name))
	case name[0] == '-':
		return fmt.Errorf("name %q must not start with '-'", name)
	}
	for _, c := range name {
		if c <= ' ' || c > '~' || c == ',' || c == '@' || c == '#' {
			return fmt.Errorf("name %q holds %q: use printable ASCII without spaces, ',', '@' or '#'", name, c)
		}
	}
	return nil
}
