//! The client-server API: one file per endpoint group, and the route table.

mod account;
mod account_data;
mod admin;
mod backup;
mod devices;
mod directory;
mod discovery;
mod ephemeral;
mod events;
mod federation_join;
pub mod filter;
pub mod keys;
pub mod media;
pub mod membership;
mod messages;
mod profile;
mod register;
mod room_create;
mod session;
mod sync;
mod threads;
mod uiaa;

use std::sync::Arc;

use axum::{Router, extract::State, routing::get};

pub use account::deactivate_user;
pub use devices::end_sessions;
pub use register::{create_user, create_user_hashed};

use crate::{
    Services,
    router::{Guard, RumaRouter, Token},
};

/// Registers every client API endpoint.
#[allow(deprecated)] // The legacy media endpoints stay for older clients.
pub fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        // Discovery.
        .ruma(discovery::versions)
        .ruma(discovery::well_known_client)
        .route(
            "/.well-known/matrix/server",
            get(|State(services): State<Arc<Services>>| discovery::well_known_server(services)),
        )
        .ruma(discovery::capabilities)
        // Server administration (Synapse's admin API shape).
        .ruma(admin::new_token)
        .ruma(admin::list_tokens)
        // Sessions and accounts.
        .ruma(session::login_types)
        .ruma(session::login)
        .ruma(session::refresh)
        .ruma(session::logout)
        .ruma(session::logout_all)
        .ruma(session::whoami)
        .ruma(register::register)
        .ruma(register::available)
        .ruma(register::token_validity)
        .ruma(account::change_password)
        .ruma(account::deactivate)
        .ruma(devices::list)
        .ruma(devices::get)
        .ruma(devices::update)
        .ruma(devices::delete)
        .ruma(devices::delete_many)
        // Rooms.
        .ruma_limited(room_create::create_room)
        .ruma(membership::join_by_id)
        .ruma(membership::join_by_id_or_alias)
        .ruma(membership::invite)
        .ruma(membership::leave)
        .ruma(membership::forget)
        .ruma(membership::kick)
        .ruma(membership::ban)
        .ruma(membership::unban)
        .ruma(membership::joined)
        .ruma_read(membership::members)
        .ruma(membership::joined_members_of)
        .ruma(directory::create)
        // Clients resolve aliases before they sign in (matrix-sdk sends no
        // token here): anyone may, within the lookups' rate limit.
        .ruma_guarded(
            directory::resolve,
            Guard {
                rate_limit: Some(Guard::LOOKUPS),
                token: Token::AsSpecified,
            },
        )
        .ruma(directory::delete)
        .ruma(directory::room_aliases)
        .ruma(directory::get_visibility)
        .ruma(directory::set_visibility)
        .ruma_signed_in(directory::list)
        .ruma(directory::list_filtered)
        // Events.
        .ruma_limited(events::send_message)
        .ruma_limited(events::send_state)
        .ruma(events::get_state)
        .ruma(events::get_state_for_key)
        .ruma_limited(events::redact)
        .ruma(events::get_event)
        .ruma_read(events::context)
        .ruma_read(messages::messages)
        .ruma_read(messages::relating)
        .ruma_read(messages::relating_with_type)
        .ruma_read(messages::relating_with_type_and_event)
        .ruma_read(threads::threads)
        .ruma_raw(threads::third_party_ids)
        .ruma(threads::protocols)
        // Sync and what it carries.
        .ruma(sync::sync)
        .ruma_read(filter::create)
        .ruma(filter::get)
        .ruma(ephemeral::receipt)
        .ruma(ephemeral::read_markers)
        .ruma(ephemeral::typing)
        .ruma(ephemeral::get_presence)
        .ruma(ephemeral::set_presence)
        .ruma_signed_in(profile::profile)
        .ruma_signed_in(profile::displayname)
        .ruma_signed_in(profile::avatar_url)
        .ruma(profile::set_displayname)
        .ruma(profile::set_avatar)
        .ruma(profile::search)
        .ruma_read(account_data::set_global)
        .ruma(account_data::get_global)
        .ruma_read(account_data::set_room)
        .ruma(account_data::get_room)
        .ruma(account_data::get_room_tags)
        .ruma(account_data::put_tag)
        .ruma(account_data::remove_tag)
        .ruma(account_data::push_rules)
        .ruma(account_data::push_rules_global)
        .ruma(account_data::push_rule)
        .ruma(account_data::set_push_rule)
        .ruma(account_data::delete_push_rule)
        .ruma(account_data::push_rule_enabled)
        .ruma(account_data::set_push_rule_enabled)
        .ruma(account_data::push_rule_actions)
        .ruma(account_data::set_push_rule_actions)
        .ruma(account_data::pushers)
        .ruma(account_data::set_pushers)
        // Media.
        .ruma(media::upload)
        .ruma_read(media::download)
        .ruma_read(media::download_as)
        .ruma_read(media::thumbnail_v1)
        .ruma(media::config_v1)
        .ruma(media::config_v3)
        .ruma_signed_in(media::download_v3)
        .ruma_signed_in(media::thumbnail_v3)
        // End-to-end encryption.
        .ruma_read(keys::upload)
        .ruma_read(keys::query)
        .ruma_read(keys::claim)
        .ruma(keys::changes)
        .ruma(keys::upload_signing)
        .ruma_read(keys::upload_sigs)
        .ruma_limited(keys::send_to_device)
        .ruma(backup::create_version)
        .ruma(backup::update_version)
        .ruma(backup::latest)
        .ruma(backup::info)
        .ruma(backup::delete_version)
        .ruma(backup::add_keys)
        .ruma(backup::add_room_keys)
        .ruma(backup::add_session_key)
        .ruma(backup::get_keys)
        .ruma(backup::get_room_keys)
        .ruma(backup::get_session_key)
        .ruma(backup::delete_keys)
        .ruma(backup::delete_room_keys)
        .ruma(backup::delete_session_key)
}
