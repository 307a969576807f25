//! Access rules: which user may do what to which repositories.
//!
//! A rule names repositories by glob (`*` is one path component, `**` any
//! number of them), users (`"anonymous"` for clients without credentials,
//! `"*"` for any authenticated user) and actions. The allowed actions for a
//! request are the union over every matching rule, intersected with what was
//! asked for.

use std::fmt;
use std::str::FromStr;

use crate::AuthError;

/// One thing a client may do to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Action::Pull => 1,
            Action::Push => 2,
            Action::Delete => 4,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Action, AuthError> {
        match s {
            "pull" => Ok(Action::Pull),
            "push" => Ok(Action::Push),
            "delete" => Ok(Action::Delete),
            other => Err(AuthError::Rule(format!(
                "unknown action {other:?} (known: \"pull\", \"push\", \"delete\")"
            ))),
        }
    }
}

/// A set of [`Action`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Actions(u8);

impl Actions {
    pub const NONE: Actions = Actions(0);
    pub const ALL: Actions = Actions(7);

    pub fn of(actions: &[Action]) -> Actions {
        Actions(actions.iter().fold(0, |bits, a| bits | a.bit()))
    }

    pub fn contains(self, action: Action) -> bool {
        self.0 & action.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: Actions) -> Actions {
        Actions(self.0 | other.0)
    }

    pub fn intersect(self, other: Actions) -> Actions {
        Actions(self.0 & other.0)
    }

    pub fn without(self, action: Action) -> Actions {
        Actions(self.0 & !action.bit())
    }

    pub fn iter(self) -> impl Iterator<Item = Action> {
        Action::ALL.into_iter().filter(move |a| self.contains(*a))
    }

    /// The names in canonical order (`pull`, `push`, `delete`).
    pub fn names(self) -> Vec<String> {
        self.iter().map(|a| a.as_str().to_string()).collect()
    }

    /// Actions named in a token scope. `*` means every action; names wharf
    /// does not know are ignored, as the token protocol asks.
    pub fn from_scope_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Actions {
        names.into_iter().fold(Actions::NONE, |set, name| {
            if name == "*" {
                Actions::ALL
            } else {
                name.parse::<Action>()
                    .map_or(set, |a| set.union(Actions::of(&[a])))
            }
        })
    }
}

impl From<Action> for Actions {
    fn from(a: Action) -> Actions {
        Actions::of(&[a])
    }
}

/// One component of a repository pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Component {
    /// `**`: any number of components, none included.
    AnyDepth,
    /// A component, where `*` stands for any run of characters within it.
    Glob(String),
}

/// A repository glob such as `docker.io/**` or `team/*/app`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoPattern {
    text: String,
    components: Vec<Component>,
}

impl RepoPattern {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, repository: &str) -> bool {
        let parts: Vec<&str> = repository.split('/').collect();
        match_components(&self.components, &parts)
    }
}

impl FromStr for RepoPattern {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<RepoPattern, AuthError> {
        let bad = |why: &str| AuthError::Rule(format!("repository pattern {s:?}: {why}"));
        if s.is_empty() {
            return Err(bad("is empty"));
        }
        let components = s
            .split('/')
            .map(|c| match c {
                "" => Err(bad("has an empty path component")),
                "**" => Ok(Component::AnyDepth),
                c if c.contains("**") => Err(bad("`**` must be a whole path component")),
                c => Ok(Component::Glob(c.to_string())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RepoPattern {
            text: s.to_string(),
            components,
        })
    }
}

impl fmt::Display for RepoPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn match_components(pattern: &[Component], parts: &[&str]) -> bool {
    match pattern.split_first() {
        None => parts.is_empty(),
        Some((Component::AnyDepth, rest)) => {
            (0..=parts.len()).any(|skip| match_components(rest, &parts[skip..]))
        }
        Some((Component::Glob(glob), rest)) => match parts.split_first() {
            Some((part, tail)) => glob_matches(glob, part) && match_components(rest, tail),
            None => false,
        },
    }
}

/// `*` matches any run of characters (a component never contains `/`).
fn glob_matches(glob: &str, text: &str) -> bool {
    let pieces: Vec<&str> = glob.split('*').collect();
    if pieces.len() == 1 {
        return glob == text;
    }
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for piece in &pieces[1..pieces.len() - 1] {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// Who a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// Clients without credentials (`"anonymous"`).
    Anonymous,
    /// Any authenticated user (`"*"`).
    AnyUser,
    User(String),
}

impl Subject {
    fn applies_to(&self, user: Option<&str>) -> bool {
        match (self, user) {
            (Subject::Anonymous, None) => true,
            (Subject::AnyUser, Some(_)) => true,
            (Subject::User(name), Some(user)) => name == user,
            _ => false,
        }
    }
}

impl From<&str> for Subject {
    fn from(s: &str) -> Subject {
        match s {
            "anonymous" => Subject::Anonymous,
            "*" => Subject::AnyUser,
            name => Subject::User(name.to_string()),
        }
    }
}

/// `[[access]] repos = "…" users = […] actions = […]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRule {
    pub repos: RepoPattern,
    pub users: Vec<Subject>,
    pub actions: Actions,
}

impl AccessRule {
    /// Builds a rule from its configuration strings, refusing unknown actions
    /// and malformed patterns.
    pub fn new(repos: &str, users: &[String], actions: &[String]) -> Result<AccessRule, AuthError> {
        let actions = actions
            .iter()
            .map(|a| a.parse::<Action>())
            .collect::<Result<Vec<_>, _>>()?;
        if users.is_empty() {
            return Err(AuthError::Rule(format!(
                "the rule for {repos:?} names no users"
            )));
        }
        Ok(AccessRule {
            repos: repos.parse()?,
            users: users.iter().map(|u| Subject::from(u.as_str())).collect(),
            actions: Actions::of(&actions),
        })
    }

    fn applies(&self, user: Option<&str>, repository: &str) -> bool {
        self.users.iter().any(|s| s.applies_to(user)) && self.repos.matches(repository)
    }
}

/// Every access rule of a registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    rules: Vec<AccessRule>,
}

impl AccessPolicy {
    /// No rules means: authenticated users may do everything, anonymous
    /// clients nothing.
    pub fn new(rules: Vec<AccessRule>) -> AccessPolicy {
        AccessPolicy { rules }
    }

    pub fn rules(&self) -> &[AccessRule] {
        &self.rules
    }

    /// The subset of `requested` that `user` (`None`: anonymous) may do on
    /// `repository`. Writes always need an authenticated user, whatever a
    /// rule says: an anonymous push or delete is never allowed.
    pub fn allowed(&self, user: Option<&str>, repository: &str, requested: Actions) -> Actions {
        let granted = if self.rules.is_empty() {
            if user.is_some() {
                Actions::ALL
            } else {
                Actions::NONE
            }
        } else {
            self.rules
                .iter()
                .filter(|r| r.applies(user, repository))
                .fold(Actions::NONE, |set, r| set.union(r.actions))
        };
        let granted = if user.is_none() {
            granted.without(Action::Push).without(Action::Delete)
        } else {
            granted
        };
        granted.intersect(requested)
    }

    pub fn allows(&self, user: Option<&str>, repository: &str, action: Action) -> bool {
        self.allowed(user, repository, action.into())
            .contains(action)
    }

    /// Whether any rule lets clients without credentials pull something. When
    /// none does, `GET /v2/` asks for credentials so that clients log in.
    pub fn anonymous_pull_anywhere(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.actions.contains(Action::Pull) && r.users.contains(&Subject::Anonymous))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(s: &str) -> RepoPattern {
        s.parse().unwrap()
    }

    fn rule(repos: &str, users: &[&str], actions: &[&str]) -> AccessRule {
        let users: Vec<String> = users.iter().map(|s| s.to_string()).collect();
        let actions: Vec<String> = actions.iter().map(|s| s.to_string()).collect();
        AccessRule::new(repos, &users, &actions).unwrap()
    }

    #[test]
    fn single_star_is_exactly_one_component() {
        let p = pattern("team/*");
        assert!(p.matches("team/app"));
        assert!(!p.matches("team"));
        assert!(!p.matches("team/app/sub"));
        assert!(!p.matches("other/app"));
    }

    #[test]
    fn double_star_is_any_depth() {
        let p = pattern("docker.io/**");
        assert!(p.matches("docker.io/library/alpine"));
        assert!(p.matches("docker.io/a"));
        assert!(p.matches("docker.io"));
        assert!(!p.matches("docker.iox/a"));
        assert!(!p.matches("quay.io/docker.io/a"));
        let mid = pattern("a/**/z");
        assert!(mid.matches("a/z"));
        assert!(mid.matches("a/b/c/z"));
        assert!(!mid.matches("a/b/c"));
        assert!(pattern("**").matches("anything/at/all"));
    }

    #[test]
    fn star_inside_a_component() {
        let p = pattern("team-*/app");
        assert!(p.matches("team-a/app"));
        assert!(p.matches("team-/app"));
        assert!(!p.matches("team/app"));
        assert!(!p.matches("team-a/b/app"));
        assert!(glob_matches("a*b*c", "aXXbYYc"));
        assert!(!glob_matches("a*b*c", "aXXcYYb"));
        assert!(glob_matches("*", ""));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        assert!("".parse::<RepoPattern>().is_err());
        assert!("a//b".parse::<RepoPattern>().is_err());
        assert!("a/**b".parse::<RepoPattern>().is_err());
        assert!("a/".parse::<RepoPattern>().is_err());
    }

    #[test]
    fn unknown_actions_and_empty_users_are_refused() {
        let err = AccessRule::new("a", &["u".into()], &["write".into()]).unwrap_err();
        assert!(err.to_string().contains("write"), "{err}");
        assert!(AccessRule::new("a", &[], &["pull".into()]).is_err());
    }

    #[test]
    fn without_rules_users_may_everything_and_anonymous_nothing() {
        let policy = AccessPolicy::default();
        assert_eq!(policy.allowed(Some("u"), "x/y", Actions::ALL), Actions::ALL);
        assert_eq!(policy.allowed(None, "x/y", Actions::ALL), Actions::NONE);
        assert!(!policy.anonymous_pull_anywhere());
    }

    #[test]
    fn evaluation_returns_the_allowed_subset() {
        let policy = AccessPolicy::new(vec![
            rule("docker.io/**", &["sync"], &["pull", "push"]),
            rule("docker.io/**", &["*"], &["pull"]),
            rule("team/*", &["alice"], &["pull", "push", "delete"]),
        ]);
        let all = Actions::ALL;
        let pull = Actions::from(Action::Pull);
        let pull_push = Actions::of(&[Action::Pull, Action::Push]);
        assert_eq!(
            policy.allowed(Some("sync"), "docker.io/library/a", all),
            pull_push
        );
        assert_eq!(
            policy.allowed(Some("bob"), "docker.io/library/a", all),
            pull
        );
        assert_eq!(policy.allowed(Some("bob"), "team/app", all), Actions::NONE);
        assert_eq!(policy.allowed(Some("alice"), "team/app", all), all);
        assert_eq!(
            policy.allowed(Some("alice"), "team/app", Actions::from(Action::Delete)),
            Actions::from(Action::Delete)
        );
        assert_eq!(
            policy.allowed(None, "docker.io/library/a", all),
            Actions::NONE
        );
        assert!(!policy.allows(Some("sync"), "team/app", Action::Pull));
    }

    #[test]
    fn anonymous_never_writes() {
        let policy = AccessPolicy::new(vec![rule(
            "public/**",
            &["anonymous"],
            &["pull", "push", "delete"],
        )]);
        assert_eq!(
            policy.allowed(None, "public/a", Actions::ALL),
            Actions::from(Action::Pull)
        );
        assert!(policy.anonymous_pull_anywhere());
        // "anonymous" is not "any user": an authenticated user gets nothing here.
        assert_eq!(
            policy.allowed(Some("bob"), "public/a", Actions::ALL),
            Actions::NONE
        );
    }

    #[test]
    fn scope_action_names() {
        assert_eq!(Actions::from_scope_names(["*"]), Actions::ALL);
        assert_eq!(
            Actions::from_scope_names(["pull", "frobnicate", "push"]),
            Actions::of(&[Action::Pull, Action::Push])
        );
        assert_eq!(Actions::ALL.names(), vec!["pull", "push", "delete"]);
    }
}
