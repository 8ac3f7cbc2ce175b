//! etcd's auth store: users, roles and their key permissions, the enabled flag and the auth
//! revision — replicated state, changed only by applying committed entries — plus this member's
//! token provider ([`token`]), which is not replicated.
//!
//! ```text
//!  apply(entry) ──► AuthStore::{user_add, role_grant_permission, enable, …}
//!                     │ one WriteBatch with the entry's other effects; revision += 1
//!                     └► permission cache cleared, tokens of a deleted/changed user dropped
//!  request ──► Tokens::info(token) ──► AuthInfo{user, revision} ──► AuthStore::check(…)
//! ```
//!
//! * Table `auth` holds `enabled` (one byte), `revision` (big-endian u64), `user/<name>`
//!   (`authpb.User`, bcrypt hash inside) and `role/<name>` (`authpb.Role`).
//! * Checks follow etcd 3.4.23 (`auth/store.go` `isOpPermitted`): auth off → allowed; no user →
//!   `user name is empty`; credentials older than the store → `revision of auth store is old`;
//!   unknown user → `permission denied`; role `root` → allowed; else the user's merged interval
//!   sets ([`perms`]), cached per user and dropped whenever the revision moves.
//! * Passwords are hashed (bcrypt) before proposing and checked outside every lock: no entry
//!   ever carries a password, and no apply waits for bcrypt.
//!
//! Not done here: deciding who the caller is (the server resolves tokens and certificates) and
//! which requests need which access (the server's enforcement points).

pub mod perms;
pub mod token;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use prost::Message as _;

pub use self::perms::Access;
use self::perms::UserPerms;
pub use self::token::Tokens;
use crate::error::{Error, Result};
use crate::proto::authpb::{Permission, Role, User, UserAddOptions};
use crate::storage::{Engine, Table, WriteBatch};

/// The user and the role that may do everything, and without which auth cannot be enabled.
pub const ROOT: &str = "root";

const KEY_ENABLED: &[u8] = b"enabled";
const KEY_REVISION: &[u8] = b"revision";
const USER_PREFIX: &[u8] = b"user/";
const ROLE_PREFIX: &[u8] = b"role/";

/// Who a request runs as: etcd's `AuthInfo`. An empty user means none (revision 0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthInfo {
    pub user: String,
    /// The auth revision the credentials stand for: the store's current one for simple tokens
    /// and certificates, the one frozen in a JWT.
    pub revision: u64,
}

#[derive(Debug, Default)]
struct State {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
}

pub struct AuthStore {
    state: RwLock<State>,
    /// Merged permissions per user, built on first use; emptied by every change.
    cache: Mutex<HashMap<String, Arc<UserPerms>>>,
    tokens: Tokens,
}

fn table_key(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    [prefix, name].concat()
}

impl AuthStore {
    pub fn open(engine: &dyn Engine, tokens: Tokens) -> Result<Self> {
        let store = Self { state: RwLock::default(), cache: Mutex::default(), tokens };
        store.reload(engine)?;
        Ok(store)
    }

    /// Reads the replicated state again (after a snapshot install). Tokens issued before stay
    /// valid unless auth was turned off.
    pub fn reload(&self, engine: &dyn Engine) -> Result<()> {
        // A store that never changed is at revision 1, as etcd's (which writes it at creation).
        let mut state = State { revision: 1, ..State::default() };
        for (key, value) in crate::storage::scan_all(engine, Table::Auth, &[], &[])? {
            let corrupt = |what: &str, e: prost::DecodeError| Error::Storage(format!("auth {what}: {e}"));
            if key == KEY_ENABLED {
                state.enabled = value == [1];
            } else if key == KEY_REVISION {
                state.revision = crate::storage::schema::decode_u64(&value).unwrap_or(0);
            } else if let Some(name) = key.strip_prefix(USER_PREFIX) {
                let user = User::decode(&value[..]).map_err(|e| corrupt("user", e))?;
                state.users.insert(String::from_utf8_lossy(name).into_owned(), user);
            } else if let Some(name) = key.strip_prefix(ROLE_PREFIX) {
                let role = Role::decode(&value[..]).map_err(|e| corrupt("role", e))?;
                state.roles.insert(String::from_utf8_lossy(name).into_owned(), role);
            }
        }
        if state.enabled {
            self.tokens.enable();
        } else {
            self.tokens.disable();
        }
        *self.state.write().expect("auth lock") = state;
        self.cache.lock().expect("auth cache lock").clear();
        Ok(())
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    pub fn is_enabled(&self) -> bool {
        self.state.read().expect("auth lock").enabled
    }

    pub fn revision(&self) -> u64 {
        self.state.read().expect("auth lock").revision
    }

    pub fn user(&self, name: &str) -> Option<User> {
        self.state.read().expect("auth lock").users.get(name).cloned()
    }

    pub fn role(&self, name: &str) -> Option<Role> {
        self.state.read().expect("auth lock").roles.get(name).cloned()
    }

    /// Every user, by name.
    pub fn users(&self) -> Vec<User> {
        self.state.read().expect("auth lock").users.values().cloned().collect()
    }

    /// Every role, by name.
    pub fn roles(&self) -> Vec<Role> {
        self.state.read().expect("auth lock").roles.values().cloned().collect()
    }

    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.user(user).is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    /// etcd's `isOpPermitted`: may `who` read or write `[key, range_end)`?
    pub fn check(&self, who: &AuthInfo, access: Access, key: &[u8], range_end: &[u8]) -> Result<()> {
        let perms = {
            let state = self.state.read().expect("auth lock");
            if !state.enabled {
                return Ok(());
            }
            if who.revision == 0 {
                return Err(Error::UserEmpty);
            }
            if who.revision < state.revision {
                return Err(Error::AuthOldRevision);
            }
            let Some(user) = state.users.get(&who.user) else { return Err(Error::PermissionDenied) };
            if is_root(user) {
                return Ok(());
            }
            self.perms(&state, &who.user, user)
        };
        if perms.permits(access, key, range_end) {
            Ok(())
        } else {
            Err(Error::PermissionDenied)
        }
    }

    /// etcd's `IsAdminPermitted`: is `who` a holder of role root?
    pub fn check_admin(&self, who: &AuthInfo) -> Result<()> {
        let state = self.state.read().expect("auth lock");
        if !state.enabled {
            return Ok(());
        }
        if who.user.is_empty() {
            return Err(Error::UserEmpty);
        }
        match state.users.get(&who.user) {
            None => Err(Error::UserNotFound),
            Some(user) if is_root(user) => Ok(()),
            Some(_) => Err(Error::PermissionDenied),
        }
    }

    fn perms(&self, state: &State, name: &str, user: &User) -> Arc<UserPerms> {
        let mut cache = self.cache.lock().expect("auth cache lock");
        cache
            .entry(name.to_string())
            .or_insert_with(|| {
                let grants = user.roles.iter().filter_map(|r| state.roles.get(r)).flat_map(|r| &r.key_permission);
                Arc::new(UserPerms::merge(grants))
            })
            .clone()
    }

    /// Checks `password` (bcrypt, slow: call it off the async runtime). Answers the auth
    /// revision the check was made at.
    pub fn check_password(&self, name: &str, password: &str) -> Result<u64> {
        let (hash, revision) = {
            let state = self.state.read().expect("auth lock");
            if !state.enabled {
                return Err(Error::AuthNotEnabled);
            }
            let user = state.users.get(name).ok_or(Error::AuthFailed)?;
            if user.options.as_ref().is_some_and(|o| o.no_password) {
                return Err(Error::NoPasswordUser);
            }
            (user.password.clone(), state.revision)
        };
        let hash = String::from_utf8(hash).map_err(|_| Error::AuthFailed)?;
        match bcrypt::verify(password, &hash) {
            Ok(true) => Ok(revision),
            _ => Err(Error::AuthFailed),
        }
    }

    /// Whether `name` may be given a token (applying Authenticate).
    pub fn can_authenticate(&self, name: &str) -> Result<()> {
        let state = self.state.read().expect("auth lock");
        if !state.enabled {
            return Err(Error::AuthNotEnabled);
        }
        match state.users.get(name) {
            Some(u) if !u.options.as_ref().is_some_and(|o| o.no_password) => Ok(()),
            _ => Err(Error::AuthFailed),
        }
    }

    // --- changes, each applied from a committed entry into the entry's batch ---

    pub fn enable(&self, b: &mut WriteBatch) -> Result<()> {
        let mut state = self.state.write().expect("auth lock");
        if state.enabled {
            return Ok(());
        }
        let root = state.users.get(ROOT).ok_or(Error::RootUserNotExist)?;
        if !is_root(root) {
            return Err(Error::RootRoleNotExist);
        }
        state.enabled = true;
        b.put(Table::Auth, KEY_ENABLED, [1u8]);
        self.tokens.enable();
        Ok(())
    }

    pub fn disable(&self, b: &mut WriteBatch) {
        let mut state = self.state.write().expect("auth lock");
        if !state.enabled {
            return;
        }
        state.enabled = false;
        b.put(Table::Auth, KEY_ENABLED, [0u8]);
        self.bump(&mut state, b);
        self.tokens.disable();
    }

    pub fn user_add(&self, b: &mut WriteBatch, name: &str, hashed: Vec<u8>, no_password: bool) -> Result<()> {
        if name.is_empty() {
            return Err(Error::UserEmpty);
        }
        let mut state = self.state.write().expect("auth lock");
        if state.users.contains_key(name) {
            return Err(Error::UserExists);
        }
        let user = User {
            name: name.as_bytes().to_vec(),
            password: hashed,
            roles: Vec::new(),
            options: Some(UserAddOptions { no_password }),
        };
        self.put_user(&mut state, b, user);
        self.bump(&mut state, b);
        Ok(())
    }

    pub fn user_delete(&self, b: &mut WriteBatch, name: &str) -> Result<()> {
        let mut state = self.state.write().expect("auth lock");
        if state.enabled && name == ROOT {
            return Err(Error::InvalidAuthMgmt);
        }
        state.users.remove(name).ok_or(Error::UserNotFound)?;
        b.delete(Table::Auth, table_key(USER_PREFIX, name.as_bytes()));
        self.bump(&mut state, b);
        self.tokens.invalidate_user(name);
        Ok(())
    }

    pub fn user_change_password(&self, b: &mut WriteBatch, name: &str, hashed: Vec<u8>) -> Result<()> {
        let mut state = self.state.write().expect("auth lock");
        let mut user = state.users.get(name).cloned().ok_or(Error::UserNotFound)?;
        user.password = hashed;
        self.put_user(&mut state, b, user);
        self.bump(&mut state, b);
        self.tokens.invalidate_user(name);
        Ok(())
    }

    pub fn user_grant_role(&self, b: &mut WriteBatch, name: &str, role: &str) -> Result<()> {
        let mut state = self.state.write().expect("auth lock");
        let mut user = state.users.get(name).cloned().ok_or(Error::UserNotFound)?;
        if role != ROOT && !state.roles.contains_key(role) {
            return Err(Error::RoleNotFound);
        }
        let Err(at) = user.roles.binary_search_by(|r| r.as_str().cmp(role)) else { return Ok(()) };
        user.roles.insert(at, role.to_string());
        self.put_user(&mut state, b, user);
        self.bump(&mut state, b);
        Ok(())
    }

    pub fn user_revoke_role(&self, b: &mut WriteBatch, name: &str, role: &str) -> Result<()> {
        let mut state = self.state.write().expect("auth lock");
        if state.enabled && name == ROOT && role == ROOT {
            return Err(Error::InvalidAuthMgmt);
        }
        let mut user = state.users.get(name).cloned().ok_or(Error::UserNotFound)?;
        let before = user.roles.len();
        user.roles.retain(|r| r != role);
        if user.roles.len() == before {
            return Err(Error::RoleNotGranted);
        }
        self.put_user(&mut state, b, user);
        self.bump(&mut state, b);
        Ok(())
    }

    pub fn role_add(&self, b: &mut WriteBatch, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(Error::RoleEmpty);
        }
        let mut state = self.state.write().expect("auth lock");
        if state.roles.contains_key(name) {
            return Err(Error::RoleExists);
        }
        self.put_role(&mut state, b, Role { name: name.as_bytes().to_vec(), key_permission: Vec::new() });
        self.bump(&mut state, b);
        Ok(())
    }

    /// Deletes a role and takes it from every user holding it.
    pub fn role_delete(&self, b: &mut WriteBatch, name: &str) -> Result<()> {
        let mut state = self.state.write().expect("auth lock");
        if state.enabled && name == ROOT {
            return Err(Error::InvalidAuthMgmt);
        }
        state.roles.remove(name).ok_or(Error::RoleNotFound)?;
        b.delete(Table::Auth, table_key(ROLE_PREFIX, name.as_bytes()));
        let holders: Vec<User> = state.users.values().filter(|u| u.roles.iter().any(|r| r == name)).cloned().collect();
        for mut user in holders {
            user.roles.retain(|r| r != name);
            self.put_user(&mut state, b, user);
        }
        self.bump(&mut state, b);
        Ok(())
    }

    /// Grants a permission, or changes the type of the grant on the same key and range end.
    pub fn role_grant_permission(&self, b: &mut WriteBatch, name: &str, perm: Permission) -> Result<()> {
        let mut state = self.state.write().expect("auth lock");
        let mut role = state.roles.get(name).cloned().ok_or(Error::RoleNotFound)?;
        match role.key_permission.iter_mut().find(|p| p.key == perm.key && p.range_end == perm.range_end) {
            Some(existing) => existing.perm_type = perm.perm_type,
            None => {
                role.key_permission.push(perm);
                role.key_permission.sort_by(|a, b| a.key.cmp(&b.key));
            }
        }
        self.put_role(&mut state, b, role);
        self.bump(&mut state, b);
        Ok(())
    }

    pub fn role_revoke_permission(&self, b: &mut WriteBatch, name: &str, key: &[u8], range_end: &[u8]) -> Result<()> {
        let mut state = self.state.write().expect("auth lock");
        let mut role = state.roles.get(name).cloned().ok_or(Error::RoleNotFound)?;
        let before = role.key_permission.len();
        role.key_permission.retain(|p| p.key != key || p.range_end != range_end);
        if role.key_permission.len() == before {
            return Err(Error::PermissionNotGranted);
        }
        self.put_role(&mut state, b, role);
        self.bump(&mut state, b);
        Ok(())
    }

    fn put_user(&self, state: &mut State, b: &mut WriteBatch, user: User) {
        b.put(Table::Auth, table_key(USER_PREFIX, &user.name), user.encode_to_vec());
        state.users.insert(String::from_utf8_lossy(&user.name).into_owned(), user);
    }

    fn put_role(&self, state: &mut State, b: &mut WriteBatch, role: Role) {
        b.put(Table::Auth, table_key(ROLE_PREFIX, &role.name), role.encode_to_vec());
        state.roles.insert(String::from_utf8_lossy(&role.name).into_owned(), role);
    }

    /// Every change moves the auth revision, which outdates cached permissions and older JWTs.
    fn bump(&self, state: &mut State, b: &mut WriteBatch) {
        state.revision += 1;
        b.put(Table::Auth, KEY_REVISION, state.revision.to_be_bytes());
        self.cache.lock().expect("auth cache lock").clear();
    }
}

fn is_root(user: &User) -> bool {
    user.roles.iter().any(|r| r == ROOT)
}

/// Hashes a password for a user record (bcrypt, slow: call it off the async runtime). Costs
/// outside bcrypt's 4–31 fall back to 10, as in etcd.
pub fn hash_password(password: &str, cost: u32) -> Result<Vec<u8>> {
    let cost = if (4..=31).contains(&cost) { cost } else { bcrypt::DEFAULT_COST };
    bcrypt::hash(password, cost).map(String::into_bytes).map_err(|e| Error::Internal(format!("bcrypt: {e}")))
}

#[cfg(test)]
mod tests;
