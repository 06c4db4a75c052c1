package broker

import (
	"fmt"
	"slices"
	"strings"

	"github.com/busbar/busbar/subject"
)

// Checks of the declared accounts (Options.Accounts), run by
// Options.Validate and by config, which reports them with positions.

// CheckAccounts reports every problem with list: bad subjects, imports
// of accounts or subjects nobody exports (or exports to someone else),
// wildcard mappings that cannot work.
func CheckAccounts(list []Account) []*AccountError {
	var errs []*AccountError
	byName := make(map[string]*Account, len(list))
	for i := range list {
		a := &list[i]
		n := accountName(a.Name)
		if byName[n] != nil {
			errs = append(errs, &AccountError{Account: n, Export: -1, Import: -1, Msg: "declared more than once"})
		}
		byName[n] = a
		for j, ex := range a.Exports {
			bad := func(f string, args ...any) {
				errs = append(errs, &AccountError{Account: n, Export: j, Import: -1, Msg: fmt.Sprintf(f, args...)})
			}
			switch rt := strings.ToLower(ex.ResponseType); {
			case !subject.ValidFilter([]byte(ex.Subject)):
				bad("%q is not a valid subject", ex.Subject)
			case rt != "" && rt != "singleton" && rt != "stream" && rt != "chunked":
				bad("response_type %q is not singleton, stream or chunked", ex.ResponseType)
			case !ex.Service && (rt != "" || ex.ResponseThreshold != 0):
				bad("a stream export has no response type or threshold")
			case ex.ResponseThreshold < 0:
				bad("response_threshold must not be negative")
			}
		}
	}
	for i := range list {
		a := &list[i]
		n := accountName(a.Name)
		for j, im := range a.Imports {
			if msg := checkImport(byName, n, im); msg != "" {
				errs = append(errs, &AccountError{Account: n, Export: -1, Import: j, Msg: msg})
			}
		}
	}
	if len(errs) == 0 {
		errs = checkCycles(list)
	}
	return errs
}

// flow is one import seen as the way messages go: published in from on a
// subject fromSubj matches, they appear in to as toSubj.
type flow struct {
	from, to         string
	fromSubj, toSubj string
	account, index   int // the import, for the error
}

// checkCycles refuses imports along which a message could come back to an
// account it left (nats-server: "import forms a cycle").
func checkCycles(list []Account) []*AccountError {
	var flows []flow
	for i := range list {
		n := accountName(list[i].Name)
		for j, im := range list[i].Imports {
			to := im.To
			if to == "" {
				to = im.Subject
			}
			f := flow{from: accountName(im.Account), to: n, fromSubj: im.Subject, toSubj: to, account: i, index: j}
			if im.Service {
				f.from, f.to, f.fromSubj, f.toSubj = n, f.from, to, im.Subject
			}
			flows = append(flows, f)
		}
	}
	var errs []*AccountError
	for _, f := range flows {
		if reaches(flows, f.to, f.toSubj, f.from, len(flows)) {
			errs = append(errs, &AccountError{Account: accountName(list[f.account].Name), Export: -1, Import: f.index,
				Msg: fmt.Sprintf("forms a cycle: messages on %q can come back to account %s", f.fromSubj, f.from)})
		}
	}
	return errs
}

// reaches reports whether a message in account acc on subjects subj
// matches can flow on to account target. depth bounds the walk.
func reaches(flows []flow, acc, subj, target string, depth int) bool {
	if depth == 0 {
		return false
	}
	for _, f := range flows {
		if f.from != acc || !filtersOverlap(f.fromSubj, subj) {
			continue
		}
		if f.to == target || reaches(flows, f.to, f.toSubj, target, depth-1) {
			return true
		}
	}
	return false
}

// filtersOverlap reports whether some subject matches both filters.
func filtersOverlap(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(at) && i < len(bt); i++ {
		switch {
		case at[i] == ">" || bt[i] == ">":
			return true
		case at[i] == "*" || bt[i] == "*" || at[i] == bt[i]:
		default:
			return false
		}
	}
	return len(at) == len(bt)
}

// checkImport returns why im, an import of account n, cannot work, or "".
func checkImport(byName map[string]*Account, n string, im Import) string {
	kind := "stream"
	if im.Service {
		kind = "service"
	}
	src := accountName(im.Account)
	to := im.To
	if to == "" {
		to = im.Subject
	}
	switch {
	case im.Account == "":
		return "the exporting account is missing"
	case src == n:
		return "an account cannot import from itself"
	case !subject.ValidFilter([]byte(im.Subject)):
		return fmt.Sprintf("%q is not a valid subject", im.Subject)
	case !subject.ValidFilter([]byte(to)):
		return fmt.Sprintf("to %q is not a valid subject", to)
	case byName[src] == nil:
		return fmt.Sprintf("account %q is not declared (it must export %q)", im.Account, im.Subject)
	}
	if findExport(byName[src], im.Service, im.Subject, n) == nil {
		return fmt.Sprintf("account %s exports no %s covering %q to %s", src, kind, im.Subject, n)
	}
	from, dst := im.Subject, to
	if im.Service {
		from, dst = to, im.Subject
	}
	if _, err := newTransform(from, dst); err != nil {
		return err.Error()
	}
	return ""
}

// findExport returns a's export of the kind asked that covers filter and
// that importer may import, or nil.
func findExport(a *Account, service bool, filter, importer string) *Export {
	for i := range a.Exports {
		ex := &a.Exports[i]
		if ex.Service != service || !filterCovers(ex.Subject, filter) {
			continue
		}
		if len(ex.Accounts) == 0 || slices.ContainsFunc(ex.Accounts, func(s string) bool { return accountName(s) == importer }) {
			return ex
		}
	}
	return nil
}

// filterCovers reports whether every subject filter f matches is matched
// by e, token by token.
func filterCovers(e, f string) bool {
	et, ft := strings.Split(e, "."), strings.Split(f, ".")
	for i, t := range et {
		switch {
		case t == ">":
			return i < len(ft)
		case i >= len(ft):
			return false
		case ft[i] == ">":
			return false
		case t == "*":
		case t != ft[i]:
			return false
		}
	}
	return len(et) == len(ft)
}
