package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/mediamesh/mediamesh/command/accounts"
	pginfra "github.com/mediamesh/mediamesh/infra/postgres"
)

// runUsers is `mediamesh users create|set-role`: the operator's account commands,
// how the first admin comes to exist (registration over HTTP only ever makes
// viewers).
//
// Input the operator can fix (an invalid field, an email already taken, an
// unknown email) is a usage error, exit 2, each problem on its own line; exit 1 is
// left for failures of the system (the database is down, …).
func runUsers(ctx context.Context, e env, args []string) error {
	usage := func() {
		fmt.Fprintln(e.stderr, "usage: mediamesh users create --email E --password-stdin --role viewer|editor|admin [--name N]")
		fmt.Fprintln(e.stderr, "       mediamesh users set-role --email E --role viewer|editor|admin")
	}
	if len(args) == 0 {
		usage()
		return errUsage
	}
	switch args[0] {
	case "create":
		return runUsersCreate(ctx, e, args[1:])
	case "set-role":
		return runUsersSetRole(ctx, e, args[1:])
	case "help", "-h", "-help", "--help":
		usage()
		return flag.ErrHelp
	}
	fmt.Fprintf(e.stderr, "mediamesh users: unknown subcommand %q\n", args[0])
	usage()
	return errUsage
}

func runUsersCreate(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "users create", "--email E --password-stdin --role viewer|editor|admin [--name N]")
	email := fs.String("email", "", "email of the account (required)")
	fromStdin := fs.Bool("password-stdin", false, "read the password from standard input, e.g. printf '%s' \"$PW\" | … (required: a password is never a command-line argument, which other users and the shell history would see)")
	role := fs.String("role", "", "viewer, editor or admin (required)")
	name := fs.String("name", "", "display name (default: the email's local part)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *email == "" || *role == "" || !*fromStdin || fs.NArg() > 0 {
		fmt.Fprintln(e.stderr, "mediamesh users create: --email, --role and --password-stdin are required")
		fs.Usage()
		return errUsage
	}
	pw, err := accounts.ReadPassword(e.stdin)
	if err != nil {
		fmt.Fprintf(e.stderr, "mediamesh users create: %v\n", err)
		return errUsage
	}
	return withAccounts(ctx, e, "users create", func(ctx context.Context, h accounts.Handlers) error {
		a, err := h.CreateUser.Handle(ctx, accounts.CreateUser{Email: *email, Password: pw, Name: *name, Role: *role})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(e.stdout, "created %s %s (id %s, name %q)\n", a.Role, a.Email, a.ID, a.Name)
		return err
	})
}

func runUsersSetRole(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "users set-role", "--email E --role viewer|editor|admin")
	email := fs.String("email", "", "email of the account (required)")
	role := fs.String("role", "", "the new role: viewer, editor or admin (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *email == "" || *role == "" || fs.NArg() > 0 {
		fmt.Fprintln(e.stderr, "mediamesh users set-role: --email and --role are required")
		fs.Usage()
		return errUsage
	}
	return withAccounts(ctx, e, "users set-role", func(ctx context.Context, h accounts.Handlers) error {
		a, err := h.SetRole.Handle(ctx, accounts.SetRole{Email: *email, Role: *role})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(e.stdout, "%s is now %s (id %s); access tokens already issued keep their role until they expire, the next refresh carries the new one\n", a.Email, a.Role, a.ID)
		return err
	})
}

// withAccounts opens the primary database (migrating it in the embedded mode),
// builds the account use cases and runs fn, turning the operator's mistakes into
// usage errors.
func withAccounts(ctx context.Context, e env, name string, fn func(context.Context, accounts.Handlers) error) error {
	cfg, log, err := setup(e)
	if err != nil {
		return err
	}
	d, err := openPrimary(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer d.close()
	h, err := accounts.NewHandlers(pginfra.NewAccountStore(d.pool), noTokens{}, accountsConfig(cfg))
	if err != nil {
		return err
	}
	err = fn(ctx, h)
	var ve *accounts.ValidationError
	switch {
	case errors.As(err, &ve):
		for _, f := range ve.Fields {
			fmt.Fprintf(e.stderr, "mediamesh %s: %s: %s\n", name, f.Field, f.Message)
		}
		return errUsage
	case errors.Is(err, accounts.ErrEmailTaken), errors.Is(err, accounts.ErrNotFound):
		fmt.Fprintf(e.stderr, "mediamesh %s: %v\n", name, err)
		return errUsage
	}
	return err
}

// noTokens is the token minter of the users subcommands: they create accounts and
// change roles but never log anyone in, so they need no signing key (an operator's
// machine may well not hold the deployment's).
type noTokens struct{}

func (noTokens) Mint(string, string, time.Duration) (string, error) {
	return "", errors.New("the users subcommands mint no tokens")
}
