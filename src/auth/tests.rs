//! The auth store's rules, as etcd 3.4.23 applies them.

use super::*;
use crate::proto::authpb::permission::Type as PermType;
use crate::storage::MemoryEngine;

fn store() -> (MemoryEngine, AuthStore) {
    let engine = MemoryEngine::new();
    let tokens = Tokens::from_flags("simple", std::time::Duration::from_secs(300)).unwrap();
    let store = AuthStore::open(&engine, tokens).unwrap();
    (engine, store)
}

fn apply(engine: &MemoryEngine, f: impl FnOnce(&mut WriteBatch) -> Result<()>) -> Result<()> {
    let mut b = WriteBatch::new();
    let r = f(&mut b);
    engine.write(b, false).unwrap();
    r
}

fn info(user: &str, revision: u64) -> AuthInfo {
    AuthInfo { user: user.into(), revision }
}

#[test]
fn enabling_needs_root_holding_role_root_and_root_stays_while_enabled() {
    let (e, s) = store();
    assert_eq!(s.revision(), 1, "a new store is at revision 1");
    assert_eq!(apply(&e, |b| s.enable(b)), Err(Error::RootUserNotExist));
    apply(&e, |b| s.user_add(b, ROOT, vec![], false)).unwrap();
    assert_eq!(apply(&e, |b| s.enable(b)), Err(Error::RootRoleNotExist));
    apply(&e, |b| s.user_grant_role(b, ROOT, ROOT)).unwrap();
    apply(&e, |b| s.enable(b)).unwrap();
    assert_eq!(s.revision(), 3, "enable does not move the revision");
    apply(&e, |b| s.enable(b)).unwrap();
    assert_eq!(apply(&e, |b| s.user_delete(b, ROOT)), Err(Error::InvalidAuthMgmt));
    assert_eq!(apply(&e, |b| s.user_revoke_role(b, ROOT, ROOT)), Err(Error::InvalidAuthMgmt));
    assert_eq!(apply(&e, |b| s.role_delete(b, ROOT)), Err(Error::InvalidAuthMgmt));
    apply(&e, |b| {
        s.disable(b);
        Ok(())
    })
    .unwrap();
    assert_eq!(s.revision(), 4, "disable moves the revision");
    apply(&e, |b| s.user_delete(b, ROOT)).unwrap();
}

#[test]
fn checks_follow_etcds_order() {
    let (e, s) = store();
    apply(&e, |b| s.user_add(b, ROOT, vec![], false)).unwrap();
    apply(&e, |b| s.user_grant_role(b, ROOT, ROOT)).unwrap();
    apply(&e, |b| s.user_add(b, "u", vec![], false)).unwrap();
    apply(&e, |b| s.role_add(b, "r")).unwrap();
    let perm = Permission { key: b"a".to_vec(), range_end: b"c".to_vec(), perm_type: PermType::Read as i32 };
    apply(&e, |b| s.role_grant_permission(b, "r", perm)).unwrap();
    apply(&e, |b| s.user_grant_role(b, "u", "r")).unwrap();
    assert_eq!(s.check(&info("", 0), Access::Write, b"z", b""), Ok(()), "auth off: everything passes");
    apply(&e, |b| s.enable(b)).unwrap();
    let rev = s.revision();
    assert_eq!(s.check(&info("", 0), Access::Read, b"a", b""), Err(Error::UserEmpty));
    assert_eq!(s.check(&info("u", rev - 1), Access::Read, b"a", b""), Err(Error::AuthOldRevision));
    assert_eq!(s.check(&info("ghost", rev), Access::Read, b"a", b""), Err(Error::PermissionDenied));
    assert_eq!(s.check(&info("root", rev), Access::Write, b"anything", b"\0"), Ok(()));
    assert_eq!(s.check(&info("u", rev), Access::Read, b"b", b""), Ok(()));
    assert_eq!(s.check(&info("u", rev), Access::Read, b"a", b"d"), Err(Error::PermissionDenied));
    assert_eq!(s.check(&info("u", rev), Access::Write, b"b", b""), Err(Error::PermissionDenied));
    assert_eq!(s.check_admin(&info("u", rev)), Err(Error::PermissionDenied));
    assert_eq!(s.check_admin(&info("ghost", rev)), Err(Error::UserNotFound));
    assert_eq!(s.check_admin(&info("", 0)), Err(Error::UserEmpty));
    assert_eq!(s.check_admin(&info("root", rev)), Ok(()));

    // A grant changes the cached permissions at once.
    let write = Permission { key: b"b".to_vec(), range_end: vec![], perm_type: PermType::Readwrite as i32 };
    apply(&e, |b| s.role_grant_permission(b, "r", write)).unwrap();
    assert_eq!(s.check(&info("u", s.revision()), Access::Write, b"b", b""), Ok(()));
    apply(&e, |b| s.role_delete(b, "r")).unwrap();
    assert!(s.user("u").unwrap().roles.is_empty(), "deleting a role takes it from its holders");
    assert_eq!(s.check(&info("u", s.revision()), Access::Read, b"b", b""), Err(Error::PermissionDenied));
}

#[test]
fn state_survives_reopening() {
    let (e, s) = store();
    apply(&e, |b| s.user_add(b, ROOT, b"hash".to_vec(), false)).unwrap();
    apply(&e, |b| s.user_grant_role(b, ROOT, ROOT)).unwrap();
    apply(&e, |b| s.role_add(b, "r")).unwrap();
    apply(&e, |b| s.enable(b)).unwrap();
    let tokens = Tokens::from_flags("simple", std::time::Duration::from_secs(1)).unwrap();
    let again = AuthStore::open(&e, tokens).unwrap();
    assert!(again.is_enabled());
    assert_eq!(again.revision(), s.revision());
    assert_eq!(again.user(ROOT).unwrap().password, b"hash");
    assert_eq!(again.roles().len(), 1);
}

#[test]
fn user_and_role_errors() {
    let (e, s) = store();
    assert_eq!(apply(&e, |b| s.user_add(b, "", vec![], false)), Err(Error::UserEmpty));
    assert_eq!(apply(&e, |b| s.role_add(b, "")), Err(Error::RoleEmpty));
    apply(&e, |b| s.user_add(b, "u", vec![], false)).unwrap();
    assert_eq!(apply(&e, |b| s.user_add(b, "u", vec![], false)), Err(Error::UserExists));
    assert_eq!(apply(&e, |b| s.user_grant_role(b, "u", "nope")), Err(Error::RoleNotFound));
    apply(&e, |b| s.user_grant_role(b, "u", ROOT)).unwrap();
    let rev = s.revision();
    apply(&e, |b| s.user_grant_role(b, "u", ROOT)).unwrap();
    assert_eq!(s.revision(), rev, "granting a held role changes nothing");
    assert_eq!(apply(&e, |b| s.user_revoke_role(b, "u", "x")), Err(Error::RoleNotGranted));
    apply(&e, |b| s.role_add(b, "r")).unwrap();
    assert_eq!(apply(&e, |b| s.role_add(b, "r")), Err(Error::RoleExists));
    assert_eq!(apply(&e, |b| s.role_revoke_permission(b, "r", b"k", b"")), Err(Error::PermissionNotGranted));
    assert_eq!(apply(&e, |b| s.user_delete(b, "nobody")), Err(Error::UserNotFound));
    assert_eq!(apply(&e, |b| s.role_delete(b, "nobody")), Err(Error::RoleNotFound));
}

#[test]
fn passwords_are_checked_against_bcrypt_hashes() {
    let (e, s) = store();
    let hash = hash_password("secret", 4).unwrap();
    apply(&e, |b| s.user_add(b, ROOT, hash, false)).unwrap();
    apply(&e, |b| s.user_add(b, "np", vec![], true)).unwrap();
    apply(&e, |b| s.user_grant_role(b, ROOT, ROOT)).unwrap();
    assert_eq!(s.check_password(ROOT, "secret"), Err(Error::AuthNotEnabled));
    apply(&e, |b| s.enable(b)).unwrap();
    assert_eq!(s.check_password(ROOT, "secret"), Ok(s.revision()));
    assert_eq!(s.check_password(ROOT, "wrong"), Err(Error::AuthFailed));
    assert_eq!(s.check_password("nobody", "x"), Err(Error::AuthFailed));
    assert_eq!(s.check_password("np", ""), Err(Error::NoPasswordUser));
}
