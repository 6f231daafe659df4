//! SEARCH with ESEARCH's RETURN (RFC 4731) and SEARCHRES (RFC 5182),
//! and SORT (RFC 5256).

use super::{is_atom, ArgError, Args};
use crate::imap::parse::Value;
use crate::imap::search::{self, Key, SearchError};

/// How SEARCH answers: plain `* SEARCH`, ESEARCH's `RETURN (...)`, or SORT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchForm {
    /// `* SEARCH n...`.
    Plain,
    /// `* ESEARCH` with these return options (RFC 4731, RFC 5182), each once.
    Extended(Vec<SearchReturn>),
    /// `* SORT n...` by these criteria; the bool is REVERSE.
    Sort(Vec<(SortKey, bool)>),
    /// `* THREAD (...)` by this algorithm (RFC 5256).
    Thread(crate::imap::thread::Algorithm),
}

/// An ESEARCH return option (RFC 4731) or SEARCHRES's SAVE (RFC 5182).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchReturn {
    /// `MIN`.
    Min,
    /// `MAX`.
    Max,
    /// `ALL`.
    All,
    /// `COUNT`.
    Count,
    /// `SAVE`.
    Save,
}

/// A SORT criterion (RFC 5256 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// ARRIVAL: INTERNALDATE.
    Arrival,
    /// CC.
    Cc,
    /// DATE: the Date header (INTERNALDATE when none).
    Date,
    /// FROM.
    From,
    /// SIZE.
    Size,
    /// SUBJECT: the base subject.
    Subject,
    /// TO.
    To,
}

/// SEARCH's and SORT's arguments.
#[derive(Debug)]
pub struct Search {
    /// How to answer.
    pub form: SearchForm,
    /// What to look for (`$` not yet resolved).
    pub key: Key,
}

/// SORT criteria (RFC 5256): `REVERSE` applies to the next key.
pub(super) fn sort_criteria(crit: &[Value<'_>]) -> Option<Vec<(SortKey, bool)>> {
    let mut out = Vec::new();
    let mut reverse = false;
    for c in crit {
        let Value::Atom(a) = c else { return None };
        let by = match a.to_ascii_uppercase().as_str() {
            "REVERSE" if !reverse => {
                reverse = true;
                continue;
            }
            "ARRIVAL" => SortKey::Arrival,
            "CC" => SortKey::Cc,
            "DATE" => SortKey::Date,
            "FROM" => SortKey::From,
            "SIZE" => SortKey::Size,
            "SUBJECT" => SortKey::Subject,
            "TO" => SortKey::To,
            _ => return None,
        };
        out.push((by, reverse));
        reverse = false;
    }
    (!out.is_empty() && !reverse).then_some(out)
}

pub(super) fn sort(args: &[Value<'_>]) -> Args<Search> {
    let Some(Value::List(crit)) = args.first() else {
        return Err(ArgError::bad("Syntax: SORT (criteria) charset keys"));
    };
    let crit = sort_criteria(crit).ok_or_else(|| ArgError::bad("Unknown sort criterion"))?;
    charset_and_keys(args, "SORT needs a charset", SearchForm::Sort(crit))
}

/// SORT's and THREAD's `charset keys` after their first argument (RFC
/// 5256: the charset is required, so `SORT (DATE) ALL` has none). The
/// keys' strings are in that charset: they are parsed as SEARCH's
/// `CHARSET name keys`.
fn charset_and_keys(
    args: &[Value<'_>],
    no_charset: &'static str,
    form: SearchForm,
) -> Args<Search> {
    let cs = args
        .get(1)
        .and_then(Value::as_astring)
        .ok_or_else(|| ArgError::bad(no_charset))?;
    if args.len() < 3 {
        return Err(ArgError::bad("SEARCH needs a key"));
    }
    if crate::imap::searchtext::charset_decoder(&cs).is_none() {
        return Err(ArgError::BadCharset { saving: false });
    }
    let mut with_charset = vec![Value::Atom("CHARSET"), args[1].clone()];
    with_charset.extend_from_slice(&args[2..]);
    keys(&with_charset, form)
}

/// `THREAD algorithm charset keys` (RFC 5256 3).
pub(super) fn thread(args: &[Value<'_>]) -> Args<Search> {
    use crate::imap::thread::Algorithm;
    let algorithm = match args.first().and_then(Value::as_astring) {
        Some(a) if a.eq_ignore_ascii_case("REFERENCES") => Algorithm::References,
        Some(a) if a.eq_ignore_ascii_case("ORDEREDSUBJECT") => Algorithm::OrderedSubject,
        Some(_) => return Err(ArgError::bad("Unknown threading algorithm")),
        None => return Err(ArgError::bad("Syntax: THREAD algorithm charset keys")),
    };
    charset_and_keys(
        args,
        "THREAD needs a charset",
        SearchForm::Thread(algorithm),
    )
}

pub(super) fn search(mut args: &[Value<'_>]) -> Args<Search> {
    let mut form = SearchForm::Plain;
    // ESEARCH (RFC 4731): RETURN (MIN MAX ALL COUNT); () means ALL.
    if args.first().is_some_and(|a| is_atom(a, "RETURN")) {
        let Some(Value::List(opts)) = args.get(1) else {
            return Err(ArgError::bad("Syntax: SEARCH RETURN (options)"));
        };
        let mut ret = Vec::new();
        for o in opts {
            let r = match o.as_astring().map(|o| o.to_ascii_uppercase()).as_deref() {
                Some("MIN") => SearchReturn::Min,
                Some("MAX") => SearchReturn::Max,
                Some("ALL") => SearchReturn::All,
                Some("COUNT") => SearchReturn::Count,
                Some("SAVE") => SearchReturn::Save,
                _ => return Err(ArgError::bad("Unknown SEARCH return option")),
            };
            if !ret.contains(&r) {
                ret.push(r);
            }
        }
        if ret.is_empty() {
            ret.push(SearchReturn::All);
        }
        form = SearchForm::Extended(ret);
        args = &args[2..];
    }
    keys(args, form)
}

pub(super) fn keys(args: &[Value<'_>], form: SearchForm) -> Args<Search> {
    match search::parse_search(args) {
        Ok(key) => Ok(Search { form, key }),
        Err(SearchError::BadCharset) => Err(ArgError::BadCharset {
            saving: matches!(&form, SearchForm::Extended(r) if r.contains(&SearchReturn::Save)),
        }),
        Err(SearchError::Syntax(e)) => Err(ArgError::bad(e)),
    }
}
