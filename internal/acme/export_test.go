package acme

// AccountURI is the account's URL at the CA.

// AccountDir is where the account's files are.
func (c *Client) AccountDir() string { return c.acct.dir }
