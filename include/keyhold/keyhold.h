/* libkeyhold public API (umbrella header). */
#ifndef KEYHOLD_H
#define KEYHOLD_H
#include "keyhold/error.h"
#include "keyhold/secret.h"
#include "keyhold/vault.h"
#include "keyhold/log.h"
#include "keyhold/kms.h"
#include "keyhold/file.h"
#include "keyhold/region.h"
#include "keyhold/remote.h"
#endif
