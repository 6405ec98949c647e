/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "core/step-driver.h"

/* Deploying the VM wanted, one table per strategy (deploy.c). */

extern const StepTable table_create, table_recreate, table_in_place, table_in_place_resume, table_adopt_created;
