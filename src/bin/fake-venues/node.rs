//! The fake validator node: the gRPC methods the official client calls to place orders (account,
//! latest block, simulate, broadcast, x/accountplus's GetAuthenticators), on plaintext HTTP/2.
//! Transactions are decoded with the chain's own protobuf types and authenticated as CheckTx
//! does before any message is looked at (`accountplus`): the owner's own signature, or a
//! permissioned key through one of the owner's authenticators.

// `tonic::Status` is what a gRPC handler answers with; boxing it would only be unboxed again.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use dydx_proto::cosmos_sdk_proto::cosmos::auth::v1beta1::{
    BaseAccount, QueryAccountRequest, QueryAccountResponse,
};
use dydx_proto::cosmos_sdk_proto::cosmos::base::abci::v1beta1::{GasInfo, TxResponse};
use dydx_proto::cosmos_sdk_proto::cosmos::base::tendermint::v1beta1::{
    Block, GetLatestBlockRequest, GetLatestBlockResponse, Header,
};
use dydx_proto::cosmos_sdk_proto::cosmos::tx::v1beta1::{
    BroadcastTxRequest, BroadcastTxResponse, SimulateRequest, SimulateResponse,
};
use dydx_proto::cosmos_sdk_proto::prost::Message;
use dydx_proto::cosmos_sdk_proto::{Any, Timestamp};
use dydx_proto::dydxprotocol::accountplus::{
    AccountAuthenticator, GetAuthenticatorsRequest, GetAuthenticatorsResponse,
};
use dydx_proto::dydxprotocol::clob::{order, MsgCancelOrder, MsgPlaceOrder};
use sha2::{Digest, Sha256};
use tonic::codec::ProstCodec;
use tonic::server::Grpc;
use tonic::Status;

use crate::accountplus::{self, MessageScope, SignedTx};
use crate::venue::{OrderSide, PlaceAnswer, Placement, RequestFault, Service, TimeInForce, Venue};

const PLACE_ORDER: &str = "/dydxprotocol.clob.MsgPlaceOrder";
const CANCEL_ORDER: &str = "/dydxprotocol.clob.MsgCancelOrder";
/// Gas a simulated order transaction reports.
const SIMULATED_GAS: u64 = 120_000;

pub fn router(venue: Arc<Venue>) -> Router {
    Router::new()
        .route("/cosmos.auth.v1beta1.Query/Account", post(account))
        .route(
            "/cosmos.base.tendermint.v1beta1.Service/GetLatestBlock",
            post(latest_block),
        )
        .route("/cosmos.tx.v1beta1.Service/Simulate", post(simulate))
        .route("/cosmos.tx.v1beta1.Service/BroadcastTx", post(broadcast))
        .route(
            "/dydxprotocol.accountplus.Query/GetAuthenticators",
            post(authenticators),
        )
        .with_state(venue)
}

/// Runs one unary call: the request faults first, then `handle` on the decoded message.
async fn unary<Req, Resp, F>(
    venue: Arc<Venue>,
    service: Service,
    request: Request,
    handle: F,
) -> Response
where
    Req: Message + Default + Send + 'static,
    Resp: Message + Send + 'static,
    F: Fn(Arc<Venue>, Req) -> Result<Resp, Status> + Send + Sync + Clone + 'static,
{
    let slow = venue.slow_ms(service);
    if slow > 0 {
        tokio::time::sleep(Duration::from_millis(slow)).await;
    }
    let fault = match venue.request_fault(service) {
        Some(RequestFault::Down) => Some(Status::unavailable("connection refused")),
        Some(RequestFault::ServerError) => Some(Status::unavailable("503 Service Unavailable")),
        Some(RequestFault::RateLimited) => Some(Status::resource_exhausted(
            "429 Too Many Requests: rate limit exceeded",
        )),
        None => None,
    };
    if let Some(status) = fault {
        return status.into_http::<Body>();
    }
    let call = tower::service_fn(move |call: tonic::Request<Req>| {
        let venue = venue.clone();
        let handle = handle.clone();
        async move { handle(venue, call.into_inner()).map(tonic::Response::new) }
    });
    let mut grpc = Grpc::new(ProstCodec::<Resp, Req>::default());
    grpc.unary(call, request).await.map(Body::new)
}

async fn account(State(venue): State<Arc<Venue>>, request: Request) -> Response {
    unary(
        venue,
        Service::Node,
        request,
        |venue, query: QueryAccountRequest| {
            let account = BaseAccount {
                address: query.address.clone(),
                pub_key: None,
                account_number: accountplus::account_number(&query.address),
                sequence: venue.next_sequence(&query.address),
            };
            Ok(QueryAccountResponse {
                account: Some(Any {
                    type_url: "/cosmos.auth.v1beta1.BaseAccount".to_owned(),
                    value: account.encode_to_vec(),
                }),
            })
        },
    )
    .await
}

async fn latest_block(State(venue): State<Arc<Venue>>, request: Request) -> Response {
    unary(
        venue,
        Service::Node,
        request,
        |venue, _: GetLatestBlockRequest| {
            let now = chrono::Utc::now();
            let header = Header {
                chain_id: venue.chain_id.clone(),
                height: i64::from(venue.height()),
                time: Some(Timestamp {
                    seconds: now.timestamp(),
                    nanos: i32::try_from(now.timestamp_subsec_nanos()).unwrap_or(0),
                }),
                ..Header::default()
            };
            Ok(GetLatestBlockResponse {
                sdk_block: Some(Block {
                    header: Some(header),
                    ..Block::default()
                }),
                ..GetLatestBlockResponse::default()
            })
        },
    )
    .await
}

async fn simulate(State(venue): State<Arc<Venue>>, request: Request) -> Response {
    unary(venue, Service::Node, request, |_, _: SimulateRequest| {
        Ok(SimulateResponse {
            gas_info: Some(GasInfo {
                gas_wanted: SIMULATED_GAS,
                gas_used: SIMULATED_GAS,
            }),
            result: None,
        })
    })
    .await
}

async fn authenticators(State(venue): State<Arc<Venue>>, request: Request) -> Response {
    unary(
        venue,
        Service::Node,
        request,
        |venue, query: GetAuthenticatorsRequest| {
            let account_authenticators = venue
                .authenticators
                .of(&query.account)
                .iter()
                .map(|registered| AccountAuthenticator {
                    id: registered.id,
                    r#type: "AllOf".to_owned(),
                    config: accountplus::as_chain_config(registered),
                })
                .collect();
            Ok(GetAuthenticatorsResponse {
                account_authenticators,
            })
        },
    )
    .await
}

/// A message of the transaction, decoded.
enum Decoded {
    Place(Placement),
    Cancel(MsgCancelOrder),
}

async fn broadcast(State(venue): State<Arc<Venue>>, request: Request) -> Response {
    unary(
        venue,
        Service::Broadcast,
        request,
        |venue, broadcast: BroadcastTxRequest| {
            let txhash = hex::encode_upper(Sha256::digest(&broadcast.tx_bytes));
            let tx = SignedTx::decode(&broadcast.tx_bytes).map_err(Status::invalid_argument)?;
            let mut decoded = Vec::new();
            let mut scopes = Vec::new();
            for message in &tx.body.messages {
                match message.type_url.as_str() {
                    PLACE_ORDER => {
                        let placed = MsgPlaceOrder::decode(message.value.as_slice())
                            .map_err(|error| Status::invalid_argument(error.to_string()))?;
                        let mut placement = placement_of(&placed)?;
                        placement.signer = tx.signer_address();
                        placement.authenticators = tx.selected_authenticators();
                        scopes.push(MessageScope {
                            type_url: PLACE_ORDER.to_owned(),
                            owner: placement.address.clone(),
                            subaccount: placement.subaccount,
                            clob_pair_id: placement.clob_pair_id,
                        });
                        decoded.push(Decoded::Place(placement));
                    }
                    CANCEL_ORDER => {
                        let cancel = MsgCancelOrder::decode(message.value.as_slice())
                            .map_err(|error| Status::invalid_argument(error.to_string()))?;
                        let id = cancel.order_id.clone().unwrap_or_default();
                        let subaccount = id.subaccount_id.clone().unwrap_or_default();
                        scopes.push(MessageScope {
                            type_url: CANCEL_ORDER.to_owned(),
                            owner: subaccount.owner,
                            subaccount: subaccount.number,
                            clob_pair_id: id.clob_pair_id,
                        });
                        decoded.push(Decoded::Cancel(cancel));
                    }
                    other => {
                        return Ok(tx_response(
                            txhash,
                            2,
                            "sdk",
                            format!("unable to resolve type URL {other}: tx parse error"),
                        ))
                    }
                }
            }
            if let Err(refused) =
                accountplus::authenticate(&venue.authenticators, &venue.chain_id, &tx, &scopes)
            {
                // Shown by the control endpoint as received, like any placement CheckTx refused.
                for message in decoded {
                    if let Decoded::Place(placement) = message {
                        venue.refused(placement);
                    }
                }
                return Ok(tx_response(
                    txhash,
                    refused.code,
                    refused.codespace,
                    refused.log,
                ));
            }
            let mut answer = PlaceAnswer::Accepted;
            for message in decoded {
                match message {
                    Decoded::Place(placement) => answer = venue.place(placement),
                    Decoded::Cancel(cancel) => {
                        if let Some(id) = cancel.order_id {
                            let (owner, number) = id
                                .subaccount_id
                                .map(|s| (s.owner, s.number))
                                .unwrap_or_default();
                            venue.cancel(
                                &owner,
                                number,
                                id.client_id,
                                id.order_flags,
                                id.clob_pair_id,
                            );
                        }
                    }
                }
            }
            match answer {
                PlaceAnswer::Accepted => Ok(tx_response(txhash, 0, "", "[]".to_owned())),
                PlaceAnswer::AcceptedThenDropped => Err(Status::unavailable(
                    "error reading from server: connection reset by peer",
                )),
                PlaceAnswer::Rejected { code, log } => Ok(tx_response(txhash, code, "clob", log)),
            }
        },
    )
    .await
}

fn tx_response(txhash: String, code: u32, codespace: &str, raw_log: String) -> BroadcastTxResponse {
    BroadcastTxResponse {
        tx_response: Some(TxResponse {
            txhash,
            code,
            codespace: codespace.to_owned(),
            raw_log,
            ..TxResponse::default()
        }),
    }
}

fn placement_of(message: &MsgPlaceOrder) -> Result<Placement, Status> {
    let order = message
        .order
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("MsgPlaceOrder without an order"))?;
    let id = order
        .order_id
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("order without an id"))?;
    let subaccount = id
        .subaccount_id
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("order id without a subaccount"))?;
    let side = match order::Side::try_from(order.side) {
        Ok(order::Side::Buy) => OrderSide::Buy,
        Ok(order::Side::Sell) => OrderSide::Sell,
        _ => return Err(Status::invalid_argument("order side must be buy or sell")),
    };
    let time_in_force = match order::TimeInForce::try_from(order.time_in_force) {
        Ok(order::TimeInForce::Ioc) => TimeInForce::Ioc,
        Ok(order::TimeInForce::PostOnly) => TimeInForce::PostOnly,
        Ok(order::TimeInForce::FillOrKill) => TimeInForce::Fok,
        _ => TimeInForce::Gtt,
    };
    let (good_til_block, good_til_block_time) = match order.good_til_oneof {
        Some(order::GoodTilOneof::GoodTilBlock(block)) => (Some(block), None),
        Some(order::GoodTilOneof::GoodTilBlockTime(time)) => (None, Some(time)),
        None => (None, None),
    };
    Ok(Placement {
        address: subaccount.owner.clone(),
        subaccount: subaccount.number,
        client_id: id.client_id,
        client_metadata: order.client_metadata,
        clob_pair_id: id.clob_pair_id,
        order_flags: id.order_flags,
        side,
        quantums: order.quantums,
        subticks: order.subticks,
        time_in_force,
        reduce_only: order.reduce_only,
        condition_type: order.condition_type,
        trigger_subticks: order.conditional_order_trigger_subticks,
        good_til_block,
        good_til_block_time,
        signer: None,
        authenticators: None,
    })
}
