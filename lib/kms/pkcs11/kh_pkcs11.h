/* PKCS#11 v2.40 declarations for the root-key backend.  We use p11-kit's
 * header (pkg-config p11-kit-1, include path only: the module is dlopen'ed at
 * run time and p11-kit is never linked) and add what it lacks. */
#ifndef KH_KMS_PKCS11_H
#define KH_KMS_PKCS11_H
#include <p11-kit/pkcs11.h>

/* AES key wrap with padding, SP 800-38F KWP = RFC 5649 (PKCS#11 v2.40). */
#ifndef CKM_AES_KEY_WRAP_KWP
#define CKM_AES_KEY_WRAP_KWP 0x210BUL
#endif
/* The pre-standard name SoftHSM2 2.6 implements as RFC 5649. */
#ifndef CKM_AES_KEY_WRAP_PAD
#define CKM_AES_KEY_WRAP_PAD 0x210AUL
#endif

#endif
