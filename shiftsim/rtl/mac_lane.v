// shiftsim reference RTL -- fixed-point MAC lane (SPEC 5.3): T multipliers, the adder tree and
// the accumulator of SPEC 5.1:
//
//     acc = bias;  for kh: for kw:  acc = OVERFLOW(acc + sum_c w[co,c,kh,kw] * x[b,c,ih,iw])
module mac_lane #(
    parameter integer XBITS    = 8,
    parameter integer XSIGNED  = 0,
    parameter integer WBITS    = 8,
    parameter integer WSIGNED  = 1,
    parameter integer T        = 4,
    parameter integer ACC_BITS = 32,
    parameter integer SAT      = 0,
    // derived: leave at their defaults
    parameter integer XW       = XBITS + (XSIGNED ? 0 : 1),
    parameter integer WW       = WBITS + (WSIGNED ? 0 : 1),
    parameter integer PW       = XW + WW,
    parameter integer TREEW    = PW + $clog2(T)
) (
    input  wire                clk,
    input  wire                en,
    input  wire                first,
    input  wire [ACC_BITS-1:0] bias,
    input  wire [T*XBITS-1:0]  x,
    input  wire [T*WBITS-1:0]  w,
    output wire [T*PW-1:0]     prod,
    output wire [TREEW-1:0]    tree,
    output wire [ACC_BITS-1:0] acc,
    output wire                ovf,
    output wire                ovf_any
);
    genvar i;
    generate
        for (i = 0; i < T; i = i + 1) begin : g_mul
            wire signed [XW-1:0] xe;
            wire signed [WW-1:0] we;
            if (XSIGNED) begin : g_xs
                assign xe = x[i*XBITS +: XBITS];
            end else begin : g_xu
                assign xe = {1'b0, x[i*XBITS +: XBITS]};
            end
            if (WSIGNED) begin : g_ws
                assign we = w[i*WBITS +: WBITS];
            end else begin : g_wu
                assign we = {1'b0, w[i*WBITS +: WBITS]};
            end
            wire signed [PW-1:0] p = xe * we;   // the multiplier
            assign prod[i*PW +: PW] = p;
        end
    endgenerate

    adder_tree #(.T(T), .TW(PW), .TREEW(TREEW)) u_tree (.terms(prod), .sum(tree));

    accumulator #(.ACC_BITS(ACC_BITS), .IN_BITS(TREEW), .SAT(SAT)) u_acc (
        .clk(clk), .en(en), .first(first), .bias(bias), .din(tree),
        .acc(acc), .ovf(ovf), .ovf_any(ovf_any));
endmodule
